"""Load test of the query API: N concurrent clients for D seconds against a live `funnel serve`.

Starts `funnel serve` on a free loopback port over HOME (its index and whatever ranking models it
holds), waits for /health, then runs N asyncio clients (httpx), each sending POST /search requests
(SciFact dev queries from the store, cycled, ``profile=cpu``) back to back for D seconds. Prints a
Markdown table (requests, throughput, p50/p95/p99 latency, errors) and writes
``benchmarks/results/load.md`` with the machine, the command and the stages the server ran.

    .venv/bin/python benchmarks/load.py --home .funnel --clients 20 --seconds 60

The clients run on the same machine as the server, so on a 2-core VM they take some of its CPU:
the figures are a lower bound for a server with the machine to itself.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

from funnel.core.procs import stop_process

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def machine() -> str:
    import psutil

    gpu = "no GPU"
    try:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return (f"{os.cpu_count()}-core CPU VM ({platform.processor() or platform.machine()}), "
            f"{psutil.virtual_memory().total / 2**30:.0f} GiB RAM, {gpu}")


def load_queries(home: Path, limit: int = 300) -> list[str]:
    from funnel.core.store import DocumentStore

    with DocumentStore(home / "store.sqlite", readonly=True) as store:
        queries = list(store.queries().values())
    if not queries:
        queries = ["list comprehension", "open a file", "asyncio event loop", "regular expression", "dictionary"]
    return sorted(queries)[:limit]


def start_server(home: Path, port: int, extra: list[str]) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "funnel.cli.main", "-q", "--home", str(home), *extra, "serve", "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"funnel serve exited: {proc.stderr.read()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("funnel serve did not answer /health within 180 s")


async def run_clients(base: str, queries: list[str], clients: int, seconds: float, profile: str, k: int):
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    stop = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:
        async def worker(i: int) -> None:
            j = i
            while time.perf_counter() < stop:
                q = queries[j % len(queries)]
                j += clients
                t0 = time.perf_counter()
                try:
                    resp = await client.post("/search", json={"q": q, "k": k, "profile": profile})
                    key = str(resp.status_code)
                except httpx.HTTPError as exc:
                    key = type(exc).__name__
                latencies.append((time.perf_counter() - t0) * 1000)
                statuses[key] = statuses.get(key, 0) + 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(clients)))
        wall = time.perf_counter() - t0
    return np.array(latencies), statuses, wall


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", default=".funnel", help="Funnel home with an index (and models) to serve")
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--workers", type=int, default=1, help="uvicorn worker processes of the server")
    ap.add_argument("--set", action="append", default=[], dest="overrides", help="config override for the server")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "load.md"))
    ap.add_argument("--append", action="store_true", help="add this run as a section of --out instead of replacing it")
    args = ap.parse_args(argv)

    home = Path(args.home).resolve()
    load_before = os.getloadavg()
    queries = load_queries(home)
    port = free_port()
    workers = args.workers
    extra = [x for o in args.overrides + [f"serve.workers={workers}"] for x in ("--set", o)]
    proc = start_server(home, port, extra)
    base = f"http://127.0.0.1:{port}"
    try:
        health = httpx.get(f"{base}/health").json()
        for q in queries[:5]:  # one request per connection warm-up; not counted
            httpx.post(f"{base}/search", json={"q": q, "k": args.k, "profile": args.profile}, timeout=60)
        lat, statuses, wall = asyncio.run(run_clients(base, queries, args.clients, args.seconds, args.profile, args.k))
        metrics = httpx.get(f"{base}/metrics").text
    finally:
        stop_process(proc, grace_s=20)

    ok = statuses.get("200", 0)
    errors = sum(v for key, v in statuses.items() if key != "200")
    stage_lines = [line for line in metrics.splitlines()
                   if line.startswith("funnel_stage_seconds_sum") or line.startswith("funnel_stage_seconds_count")]
    stage_ms = {}
    for line in stage_lines:
        name, value = line.rsplit(" ", 1)
        stage = name.split('stage="')[1].split('"')[0]
        stage_ms.setdefault(stage, {})["sum" if "_sum" in name else "count"] = float(value)
    stages = health["stages"]
    missing = [s for s in ("coarse", "fine") if s not in stages]
    funnel_note = ("the full funnel" if not missing else
                   f"not the full funnel: no {' or '.join(missing)} stage, either not trained in this home or "
                   "turned off with pipeline.stages")
    cmd = "python benchmarks/load.py " + " ".join(argv if argv is not None else sys.argv[1:])
    table = [
        "| clients | seconds | requests | throughput (req/s) | p50 ms | p95 ms | p99 ms | max ms | errors |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {args.clients} | {wall:.1f} | {len(lat)} | {len(lat) / wall:.1f} | {np.percentile(lat, 50):.1f} | "
        f"{np.percentile(lat, 95):.1f} | {np.percentile(lat, 99):.1f} | {lat.max():.1f} | {errors} |",
    ]
    stage_table = ["| stage | mean ms per request (server side) |", "|---|---:|"] + [
        f"| {s} | {v['sum'] / max(v['count'], 1) * 1000:.2f} |" for s, v in stage_ms.items()]
    title = "# Query API under load" if not args.append else f"## Run: stages {' -> '.join(stages)}"
    out = "\n".join([
        title,
        "",
        f"- Machine: {machine()}; server and clients share it. Load average before the run: "
        f"{load_before[0]:.1f} (1 min) — other jobs were running on this shared VM.",
        f"- Command: `{cmd}`",
        f"- Server: `funnel serve` ({workers} uvicorn worker(s)), home with {health['docs']} documents, profile "
        f"`{args.profile}`, stages {' -> '.join(stages)} ({funnel_note}).",
        f"- Load: {args.clients} concurrent clients (httpx, asyncio), POST /search k={args.k}, "
        f"{len(queries)} distinct queries cycled, for {args.seconds:.0f} s. Status counts: {statuses}.",
        "",
        *table,
        "",
        *stage_table,
        "",
    ])
    print(out)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    if args.append and Path(args.out).exists():
        out = Path(args.out).read_text(encoding="utf-8").rstrip("\n") + "\n\n" + out
    Path(args.out).write_text(out, encoding="utf-8")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

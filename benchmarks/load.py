"""Load test of the query API: N concurrent clients for D seconds against a live `funnel serve`, for
one or more server modes side by side (same script, same machine, one after the other).

For each mode, starts `funnel serve` on a free loopback port over HOME (its index and whatever
ranking models it holds), times its start (launch to the first 200 from /health), then runs N
asyncio clients, each sending POST /search requests (SciFact queries from the store, cycled,
``profile=cpu``) back to back for D seconds over a kept-alive connection. Prints Markdown tables
(per mode: start time, requests, throughput, p50/p95/p99 latency, errors; server-side milliseconds
per stage) and writes ``benchmarks/results/load.md`` with the machine, the command and the stages.

Modes (``--modes old,new``): ``old`` is the server before issue 21, kept selectable by configuration:
one request at a time per pipeline (``serve.pipeline_lock=true``) and no micro-batching
(``pipeline.batch_wait_ms=0``); ``new`` is the default configuration (requests share the pipeline,
concurrent model calls batched).

    .venv/bin/python benchmarks/load.py --home .funnel --clients 20 --seconds 60 --modes old,new
    .venv/bin/python benchmarks/load.py --home .funnel --workers 2 --modes old,new --set pipeline.stages='"recall"' --append

The clients (a few lines of asyncio HTTP/1.1 on uvloop, lighter than an HTTP library) run on the same
machine as the server, so on a 2-core VM they take some of its CPU (the column "client CPU ms /
request"): the figures are a lower bound for a server with the machine to itself.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import tempfile
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
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo", encoding="utf-8")
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{os.cpu_count()}-core CPU VM ({cpu}), {psutil.virtual_memory().total / 2**30:.0f} GiB RAM, {gpu}"


def load_queries(home: Path, limit: int = 300) -> list[str]:
    from funnel.core.store import DocumentStore

    with DocumentStore(home / "store.sqlite", readonly=True) as store:
        queries = list(store.queries().values())
    if not queries:
        queries = ["list comprehension", "open a file", "asyncio event loop", "regular expression", "dictionary"]
    return sorted(queries)[:limit]


# Server modes compared side by side: configuration overrides on top of the command's own --set.
MODES = {
    "old": ["serve.pipeline_lock=true", "pipeline.batch_wait_ms=0"],  # one request at a time per pipeline, unbatched
    "new": [],  # the defaults: requests share the pipeline, concurrent model calls micro-batched
}
MODE_NAMES = {"old": "old: locked, unbatched", "new": "new: shared, micro-batched"}


def start_server(home: Path, port: int, extra: list[str] = (), log_file: Path | None = None
                 ) -> tuple[subprocess.Popen, float]:
    """`funnel serve` over HOME -> (process, seconds from launch to the first 200 from /health). Its
    stderr goes to `log_file` (default: a new temporary file): a file, not a pipe nobody reads, which
    blocks the server once full."""
    cmd = [sys.executable, "-m", "funnel.cli.main", "-q", "--home", str(home), *extra, "serve", "--port", str(port)]
    log_file = log_file or Path(tempfile.mkdtemp(prefix="funnel-serve-")) / "serve.log"
    t0 = time.perf_counter()
    with open(log_file, "w", encoding="utf-8") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"funnel serve exited: {log_file.read_text(encoding='utf-8')[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc, time.perf_counter() - t0
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("funnel serve did not answer /health within 300 s")


async def _post(reader, writer, body: bytes) -> int:
    """One POST /search on a kept-alive connection; returns the status code (body read and dropped)."""
    writer.write(b"POST /search HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    await reader.readexactly(length)
    return status


async def run_clients(port: int, queries: list[str], clients: int, seconds: float, profile: str, k: int):
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    stop = time.perf_counter() + seconds
    bodies = [json.dumps({"q": q, "k": k, "profile": profile}).encode() for q in queries]

    async def worker(i: int) -> None:
        j = i
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.perf_counter() < stop:
                body = bodies[j % len(bodies)]
                j += clients
                t0 = time.perf_counter()
                try:
                    async with asyncio.timeout(120):  # a timer, where wait_for made a task per request
                        key = str(await _post(reader, writer, body))
                except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as exc:
                    key = type(exc).__name__
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                latencies.append((time.perf_counter() - t0) * 1000)
                statuses[key] = statuses.get(key, 0) + 1
        finally:
            writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(clients)))
    wall = time.perf_counter() - t0
    return np.array(latencies), statuses, wall


def run_loop(coro):
    """Run the clients on uvloop when installed (a Funnel dependency on Linux and macOS): less of the
    shared cores goes to the load generator."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def stage_means(metrics: str) -> dict[str, float]:
    """Server-side mean milliseconds per request of each stage, from the Prometheus text."""
    sums: dict[str, dict[str, float]] = {}
    for line in metrics.splitlines():
        if line.startswith(("funnel_stage_seconds_sum", "funnel_stage_seconds_count")):
            name, value = line.rsplit(" ", 1)
            stage = name.split('stage="')[1].split('"')[0]
            sums.setdefault(stage, {})["sum" if "_sum" in name else "count"] = float(value)
    return {s: v.get("sum", 0.0) / max(v.get("count", 0.0), 1) * 1000 for s, v in sums.items()}


def server_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by the server process and its worker processes."""
    import psutil

    total = 0.0
    procs = [psutil.Process(pid)]
    procs += procs[0].children(recursive=True)
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def run_mode(mode: str, home: Path, queries: list[str], args) -> dict:
    """Start the server in `mode`, load it, stop it: the figures of one row."""
    port = free_port()
    overrides = args.overrides + MODES[mode] + [f"serve.workers={args.workers}"]
    extra = [x for o in overrides for x in ("--set", o)]
    load_before = os.getloadavg()[0]
    proc, start_s = start_server(home, port, extra)
    base = f"http://127.0.0.1:{port}"
    try:
        health = httpx.get(f"{base}/health").json()
        for q in queries[:2 * args.clients]:  # warm-up (every worker, every connection); not counted
            httpx.post(f"{base}/search", json={"q": q, "k": args.k, "profile": args.profile}, timeout=120)
        cpu0, client0 = server_cpu_s(proc.pid), time.process_time()
        lat, statuses, wall = run_loop(run_clients(port, queries, args.clients, args.seconds, args.profile, args.k))
        cpu_s, client_cpu_s = server_cpu_s(proc.pid) - cpu0, time.process_time() - client0
        metrics = httpx.get(f"{base}/metrics").text
    finally:
        stop_process(proc, grace_s=20)
    return {"mode": mode, "start_s": start_s, "health": health, "lat": lat, "statuses": statuses, "wall": wall,
            "stages": stage_means(metrics), "load_before": load_before, "cpu_s": cpu_s, "client_cpu_s": client_cpu_s}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", default=".funnel", help="Funnel home with an index (and models) to serve")
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--workers", type=int, default=1, help="uvicorn worker processes of the server")
    ap.add_argument("--modes", default="new", help=f"server modes, run one after the other: {', '.join(MODES)}")
    ap.add_argument("--set", action="append", default=[], dest="overrides", help="config override for the server")
    ap.add_argument("--title", default="", help="heading of this run's section (default: from the stages)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "load.md"))
    ap.add_argument("--append", action="store_true", help="add this run as a section of --out instead of replacing it")
    args = ap.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        ap.error(f"unknown mode(s) {unknown}; choose from {', '.join(MODES)}")

    home = Path(args.home).resolve()
    queries = load_queries(home)
    runs = [run_mode(m, home, queries, args) for m in modes]

    health = runs[0]["health"]
    stages = health["stages"]
    missing = [s for s in ("coarse", "fine") if s not in stages]
    funnel_note = ("the full funnel" if not missing else
                   f"not the full funnel: no {' or '.join(missing)} stage, either not trained in this home or "
                   "turned off with pipeline.stages")
    cmd = "python benchmarks/load.py " + " ".join(argv if argv is not None else sys.argv[1:])
    table = [
        "| server | workers | start s | clients | seconds | requests | throughput (req/s) | p50 ms | p95 ms | p99 ms | "
        "max ms | errors | server CPU ms / request | client CPU ms / request | load before |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        lat, errors = r["lat"], sum(v for key, v in r["statuses"].items() if key != "200")
        table.append(f"| {MODE_NAMES[r['mode']]} | {args.workers} | {r['start_s']:.1f} | {args.clients} | {r['wall']:.1f} | "
                     f"{len(lat)} | {len(lat) / r['wall']:.1f} | {np.percentile(lat, 50):.1f} | "
                     f"{np.percentile(lat, 95):.1f} | {np.percentile(lat, 99):.1f} | {lat.max():.1f} | {errors} | "
                     f"{r['cpu_s'] / max(len(lat), 1) * 1000:.2f} | {r['client_cpu_s'] / max(len(lat), 1) * 1000:.2f} | "
                     f"{r['load_before']:.1f} |")
    if len(runs) == 2:
        a, b = runs
        ratio = (len(b["lat"]) / b["wall"]) / max(len(a["lat"]) / a["wall"], 1e-9)
        p95 = np.percentile(b["lat"], 95) / max(np.percentile(a["lat"], 95), 1e-9)
        table += ["", f"{MODE_NAMES[b['mode']]} vs {MODE_NAMES[a['mode']]}: {ratio:.2f}x the throughput, "
                      f"p95 {p95:.2f}x."]
    all_stages = list(dict.fromkeys(s for r in runs for s in r["stages"]))
    stage_table = ["| stage | " + " | ".join(f"{MODE_NAMES[r['mode']]}: mean ms per request (server side)" for r in runs) + " |",
                   "|---|" + "---:|" * len(runs)] + [
        f"| {s} | " + " | ".join(f"{r['stages'].get(s, float('nan')):.2f}" for r in runs) + " |" for s in all_stages]
    title = args.title or f"Stages {' -> '.join(stages)}, {args.workers} worker(s)"
    out = "\n".join([
        f"## {title}",
        "",
        f"- Machine: {machine()}; server and clients share it; other jobs may share this VM "
        "too: the 1-minute load average before each run is in the table.",
        f"- Command: `{cmd}`",
        f"- Server: `funnel serve` ({args.workers} uvicorn worker(s)), home with {health['docs']} documents, profile "
        f"`{args.profile}`, stages {' -> '.join(stages)} ({funnel_note}); modes one after the other, each a fresh "
        "server. Start s: launch to the first answer of /health. Server CPU ms / request: CPU time of the server's "
        "processes during the timed run over the requests answered (what one request costs the machine, whatever "
        "else runs on it). Client CPU ms / request: the same for this script's clients, which share the machine.",
        f"- Load: {args.clients} concurrent clients (asyncio, one kept-alive connection each), POST /search "
        f"k={args.k}, {len(queries)} distinct queries cycled, for {args.seconds:.0f} s. Status counts: "
        + "; ".join(f"{r['mode']} {r['statuses']}" for r in runs) + ".",
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
    else:
        out = "# Query API under load\n\n" + out
    Path(args.out).write_text(out, encoding="utf-8")
    return 0 if all(r["statuses"].get("200") for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())

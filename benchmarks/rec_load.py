"""Latency of GET/POST /recommend against a live `funnel serve` over a MovieLens home: sequential requests,
then a few concurrent clients.

Starts `funnel serve` on a free loopback port over HOME (its interaction log and fitted funnel in
``models/rec``; a search index is not needed), waits for /health, warms up, then sends N GET /recommend
requests for random known users (seeded), one at a time and then from C client threads (each its own
keep-alive connection), and N POST /recommend cold-start requests (a random 20-item history from the
catalogue). Prints a Markdown table (p50/p95/p99 ms, req/s) and the server's per-stage times, with the
machine and the command at the top, and writes ``benchmarks/results/rec_load.md``.

    # the home: MovieLens ingested, the funnel fitted (`funnel build --task rec`) or copied in with --funnel
    .venv/bin/python benchmarks/rec_load.py --home /tmp/ml --ingest WHEEL_OR_FOLDER --funnel DIR --requests 500

The bar (issue 18): GET /recommend p95 under 50 ms sequentially. The recommendation funnel runs on the
CPU (`RecService` loads it there). Clients and server share the machine, so on a 2-core VM the
concurrent figures are a lower bound.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from funnel.cli.main import set_runtime_env  # noqa: E402

set_runtime_env()
import httpx  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.load import free_port, start_server  # noqa: E402
from benchmarks.report import command, machine, publish  # noqa: E402
from funnel.core.procs import stop_process  # noqa: E402
from funnel.core.store import DocumentStore  # noqa: E402

BAR_P95_MS = 50.0
HISTORY_LEN = 20  # items in a cold-start history


def prepare_home(home: Path, ingest: str | None, funnel: str | None) -> list[str]:
    """Ingest MovieLens and/or copy a fitted funnel into HOME/models/rec; -> what was done, for the report."""
    done = []
    if ingest:
        subprocess.run([sys.executable, "-m", "funnel.cli.main", "-q", "--home", str(home), "ingest", "movielens",
                        ingest], check=True)
        done.append(f"`funnel ingest movielens {ingest}`")
    if funnel:
        target = home / "models" / "rec"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(funnel, target)
        done.append(f"fitted funnel copied from `{funnel}` to HOME/models/rec")
    return done


def read_ids(home: Path) -> tuple[list[str], list[str]]:
    """(user ids, item ids) of the home's log."""
    with DocumentStore(home / "store.sqlite", readonly=True) as store:
        rows = store.interactions()
    return sorted({r[0] for r in rows}), sorted({r[1] for r in rows})


def percentiles(ms: list[float]) -> tuple[float, float, float, float]:
    a = np.asarray(ms)
    return float(np.percentile(a, 50)), float(np.percentile(a, 95)), float(np.percentile(a, 99)), float(a.max())


def run(base: str, requests: list[tuple[str, dict]], clients: int) -> tuple[list[float], list[dict], int, float]:
    """Send `requests` ((method, params or body)) from `clients` threads -> (latencies ms, bodies, errors, wall s)."""
    chunks = [requests[i::clients] for i in range(clients)]

    def worker(chunk):
        lat, bodies, errors = [], [], 0
        with httpx.Client(base_url=base, timeout=60) as c:
            for method, payload in chunk:
                t0 = time.perf_counter()
                resp = (c.get("/recommend", params=payload) if method == "GET"
                        else c.post("/recommend", json=payload))
                lat.append(1e3 * (time.perf_counter() - t0))
                if resp.status_code == 200:
                    bodies.append(resp.json())
                else:
                    errors += 1
        return lat, bodies, errors

    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        parts = list(pool.map(worker, chunks))
    wall = time.perf_counter() - t0
    return ([x for p in parts for x in p[0]], [b for p in parts for b in p[1]], sum(p[2] for p in parts), wall)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", required=True, help="Funnel home with an interaction log and models/rec")
    ap.add_argument("--ingest", help="MovieLens source to ingest first (wheel, folder; see `funnel ingest movielens`)")
    ap.add_argument("--funnel", help="a fitted funnel folder to copy into HOME/models/rec first")
    ap.add_argument("--requests", type=int, default=500, help="requests per scenario")
    ap.add_argument("--clients", type=int, default=4, help="client threads of the concurrent scenario")
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "rec_load.md"))
    args = ap.parse_args(argv)

    home = Path(args.home).resolve()
    prepared = prepare_home(home, args.ingest, args.funnel)
    users, items = read_ids(home)
    if not users:
        raise SystemExit(f"{home}: no interaction log; pass --ingest")
    rng = np.random.default_rng(args.seed)
    gets = [("GET", {"user": str(u), "k": args.k}) for u in rng.choice(users, args.requests)]
    posts = [("POST", {"history": [str(i) for i in rng.choice(items, HISTORY_LEN, replace=False)], "k": args.k})
             for _ in range(args.requests)]
    load_before = os.getloadavg()[0]
    port = free_port()
    log_file = Path(tempfile.mkdtemp(prefix="rec-load-")) / "serve.log"
    proc, start_s = start_server(home, port, log_file=log_file)
    base = f"http://127.0.0.1:{port}"
    try:
        health = httpx.get(f"{base}/health", timeout=10).json()
        if not health.get("recommend"):
            raise SystemExit(f"{home}: the server does not recommend (no models/rec?); /health: {health}")
        run(base, gets[:20] + posts[:20], 1)  # warm-up: first-call allocations, connection set-up; not counted
        results = []
        for name, reqs, clients in (("GET /recommend (known user)", gets, 1),
                                    (f"GET /recommend (known user), {args.clients} clients", gets, args.clients),
                                    (f"POST /recommend (cold start, {HISTORY_LEN}-item history)", posts, 1)):
            lat, bodies, errors, wall = run(base, reqs, clients)
            results.append((name, clients, lat, bodies, errors, wall))
    finally:
        stop_process(proc, grace_s=20)

    rows = ["| scenario | clients | requests | req/s | p50 ms | p95 ms | p99 ms | max ms | errors |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, clients, lat, _, errors, wall in results:
        p50, p95, p99, mx = percentiles(lat)
        rows.append(f"| {name} | {clients} | {len(lat)} | {len(lat) / wall:.1f} | {p50:.1f} | {p95:.1f} | "
                    f"{p99:.1f} | {mx:.1f} | {errors} |")
    stage_rows = ["| scenario | " + " | ".join(f"{s} p50 / p95 ms" for s in ("recall", "coarse", "fine", "rerank"))
                  + " | server total p50 / p95 ms |", "|---|---:|---:|---:|---:|---:|"]
    for name, clients, _, bodies, _, _ in results:
        if clients != 1 or not bodies:
            continue
        cells = []
        for s in ("recall", "coarse", "fine", "rerank"):
            v = [b["ms"].get(s, 0.0) for b in bodies]
            cells.append(f"{np.percentile(v, 50):.1f} / {np.percentile(v, 95):.1f}")
        took = [b["took_ms"] for b in bodies]
        stage_rows.append(f"| {name} | " + " | ".join(cells) + f" | {np.percentile(took, 50):.1f} / "
                          f"{np.percentile(took, 95):.1f} |")
    seq_p95 = percentiles(results[0][2])[1]
    verdict = (f"GET /recommend sequential p95 {seq_p95:.1f} ms: "
               + ("under" if seq_p95 < BAR_P95_MS else "OVER") + f" the issue's {BAR_P95_MS:.0f} ms bar.")
    text = "\n".join([
        "# /recommend latency (live `funnel serve`)",
        "",
        f"- Machine: {machine()}; server and clients share it (load average before the run: {load_before:.1f}"
        f"; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}).",
        f"- Command: `{command()}`",
        f"- Home: {len(users)} users, {len(items)} items in the log"
        + (f"; prepared by {', '.join(prepared)}" if prepared else "") + f". Server: `funnel serve`, 1 uvicorn "
        f"worker, recommendation on the CPU, up in {start_s:.1f} s (load included).",
        f"- Requests: k={args.k}, {args.requests} per scenario, users drawn at random (seed {args.seed}) from the "
        f"log; cold start: {HISTORY_LEN} distinct random catalogue items; 40 warm-up requests not counted. "
        "Latency is the client's (request sent to body read).",
        "",
        *rows,
        "",
        "Server-side milliseconds per stage (from each response's `ms` and `took_ms`):",
        "",
        *stage_rows,
        "",
        verdict,
        "",
    ])
    publish(text, args.out)
    return 0 if all(r[4] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())

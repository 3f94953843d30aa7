"""PageRank benchmark: networkx vs Funnel single-machine (scipy; torch on a GPU) vs Funnel Spark.

Graphs: the javadoc link graph (Debian ``openjdk-17-doc``, parsed from disk as a crawl would record
it) and a synthetic power-law graph (default 1M nodes / 10M edges). Every method runs the same
iteration from a uniform start with the same stopping rule (L1 change < tol; networkx is given
tol / N because it stops at N * tol), so they agree to rounding. Prints a Markdown table and writes
``benchmarks/results/pagerank.md``.

    .venv/bin/python benchmarks/pagerank.py [--nodes 1000000 --edges 10000000] [--spark-master local[2]]

On a GPU machine without Spark (the lent GPU), ``--spark-master none --javadoc-links FILE`` runs the
rest from a javadoc graph carried as Parquet (``benchmarks/device/prepare.py`` copies it); the torch
rows then run on CUDA.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.report import command, machine, publish  # noqa: E402
from funnel.index.pagerank import adjacency, pagerank, pagerank_edges  # noqa: E402


def javadoc_edges(path: Path) -> tuple[np.ndarray, np.ndarray, int]:
    """(src, dst, n) of the javadoc site's internal link graph; parsed once, cached as Parquet at `path`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    cache = path.parent
    if not path.exists():
        from funnel.crawler.sites import debian_site
        from funnel.pipelines.site_files import site_documents

        root = debian_site("openjdk-17-doc")
        ids, src, dst = {}, [], []
        docs = list(site_documents(root, "http://127.0.0.1:8000/"))
        for d in docs:
            ids[d.doc_id] = len(ids)
        for d in docs:
            for link in d.outlinks:
                j = ids.get(link.url)
                if j is not None:
                    src.append(ids[d.doc_id])
                    dst.append(j)
        cache.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({"src": np.asarray(src, np.int64), "dst": np.asarray(dst, np.int64),
                                 "n": np.full(len(src), len(ids), np.int64)}), path)
    t = pq.read_table(path)
    return t["src"].to_numpy(), t["dst"].to_numpy(), int(t["n"][0].as_py())


def power_law_edges(n: int, m: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, int]:
    """Zipf-like in-degrees (exponent 0.9) and out-degrees (0.5); 10% of nodes have no out-links."""
    rng = np.random.default_rng(seed)
    w_in = (np.arange(1, n + 1, dtype=np.float64)) ** -0.9
    w_out = (np.arange(1, int(n * 0.9) + 1, dtype=np.float64)) ** -0.5
    perm_in, perm_out = rng.permutation(n), rng.permutation(n)[: len(w_out)]
    dst = perm_in[np.searchsorted(np.cumsum(w_in / w_in.sum()), rng.random(m), side="right").clip(0, n - 1)]
    src = perm_out[np.searchsorted(np.cumsum(w_out / w_out.sum()), rng.random(m), side="right").clip(0, len(w_out) - 1)]
    return src.astype(np.int64), dst.astype(np.int64), n


def run_networkx(src, dst, n, damping, tol, repeat=1):
    """(scores, best seconds of `repeat` calls, seconds to build the DiGraph once)."""
    import networkx as nx

    t0 = time.perf_counter()
    g = nx.DiGraph()
    g.add_nodes_from(range(n))
    g.add_edges_from(zip(src.tolist(), dst.tolist()))
    build = time.perf_counter() - t0
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        pr = nx.pagerank(g, alpha=damping, tol=tol / n, max_iter=1000)
        best = min(best, time.perf_counter() - t0)
    return np.array([pr[i] for i in range(n)]), best, build


def run_single(src, dst, n, damping, tol, backend="scipy", repeat=1):
    """(result, best seconds of `repeat` calls), each from the edge arrays (transition matrix build included)."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        res = pagerank_edges(src, dst, n, damping, tol, 1000, backend=backend)
        best = min(best, time.perf_counter() - t0)
    return res, best


def run_spark(spark, src, dst, n, damping, tol, max_iter):
    from funnel.pipelines.pagerank_job import pagerank_df

    import pyarrow as pa
    import pyarrow.parquet as pq
    import tempfile

    with tempfile.TemporaryDirectory(dir=ROOT / ".funnel") as tmp:
        pq.write_table(pa.table({"src": src, "dst": dst}), Path(tmp) / "edges.parquet")
        edges = spark.read.parquet(str(Path(tmp) / "edges.parquet"))
        t0 = time.perf_counter()
        res = pagerank_df(spark, edges, n, damping, tol, max_iter)
        rows = res.ranks.toPandas()
        secs = time.perf_counter() - t0
    x = np.zeros(n)
    x[rows["node"].to_numpy()] = rows["rank"].to_numpy()
    return x, res.iterations, res.converged, secs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=1_000_000)
    ap.add_argument("--edges", type=int, default=10_000_000)
    ap.add_argument("--damping", type=float, default=0.85)
    ap.add_argument("--tol", type=float, default=1e-10, help="L1 change that stops the iteration")
    ap.add_argument("--spark-master", default="local[2]", help="Spark master, or 'none' to leave Spark out")
    ap.add_argument("--javadoc-links", default=str(ROOT / ".funnel" / "bench" / "javadoc_links.parquet"),
                    help="the javadoc graph as Parquet (src, dst, n); parsed from openjdk-17-doc when missing")
    ap.add_argument("--spark-max-iter-big", type=int, default=200,
                    help="cap on Spark iterations on the synthetic graph (each takes many seconds here)")
    ap.add_argument("--networkx-big", action="store_true", help="also run networkx on the synthetic graph")
    ap.add_argument("--graphs", default="javadoc,power-law", help="which graphs: javadoc, power-law or both")
    ap.add_argument("--repeat", type=int, default=5,
                    help="best of this many calls per single-machine method on graphs up to 100k nodes "
                         "(networkx included); bigger graphs run once")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "pagerank.md"))
    args = ap.parse_args()
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    (ROOT / ".funnel").mkdir(exist_ok=True)

    import torch

    graphs = {"javadoc": ("javadoc (openjdk-17-doc)", lambda: javadoc_edges(Path(args.javadoc_links))),
              "power-law": ("power-law synthetic", lambda: power_law_edges(args.nodes, args.edges))}
    wanted = [g.strip() for g in args.graphs.split(",") if g.strip()]
    if not wanted or set(wanted) - set(graphs):
        ap.error(f"--graphs: choose from {', '.join(graphs)}")
    spark = None
    if args.spark_master != "none":
        from funnel.core.config import SparkConfig
        from funnel.pipelines.session import spark_session

        spark = spark_session(SparkConfig(master=args.spark_master, driver_memory="6g", shuffle_partitions=4))
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    if gpu:  # CUDA context and sparse kernels start up once, outside the timed calls
        pagerank(adjacency(np.array([0, 1]), np.array([1, 0]), 2), backend="torch")
    rows = []

    def row(graph, n, m, method, secs, iters, l1, note=""):
        rows.append(f"| {graph} | {n:,} | {m:,} | {method} | {secs:.{3 if secs < 1 else 2}f} | {iters} | {l1} | {note} |")
        print(rows[-1], flush=True)

    for graph, load in (graphs[g] for g in wanted):
        src, dst, n = load()
        big = n > 100_000
        m = len(src)
        reps = 1 if big else args.repeat
        single, t_single = run_single(src, dst, n, args.damping, args.tol, repeat=reps)
        if not big or args.networkx_big:
            ref, t_nx, t_build = run_networkx(src, dst, n, args.damping, args.tol, repeat=reps)
            row(graph, n, m, "networkx.pagerank (DiGraph)", t_nx, "-", "reference",
                f"+{t_build:.1f}s to build the DiGraph, not counted")
            ref_name = "networkx"
        else:
            ref = pagerank(adjacency(src, dst, n), args.damping, 1e-14, 1000).scores
            ref_name = "scipy tol 1e-14"
        l1 = np.abs(single.scores - ref).sum()
        speed = f"{t_nx / t_single:.1f}x networkx" if ref_name == "networkx" else ""
        row(graph, n, m, "Funnel single-machine (scipy CSR)", t_single, single.iterations, f"{l1:.1e} vs {ref_name}",
            speed + (" (transition matrix built from the edges, included)" if speed else ""))
        built = adjacency(src, dst, n)  # like networkx's DiGraph: the graph already in memory
        best = float("inf")
        for _ in range(reps):
            t0 = time.perf_counter()
            res = pagerank(built, args.damping, args.tol, 1000, backend="scipy")
            best = min(best, time.perf_counter() - t0)
        if ref_name == "networkx":
            row(graph, n, m, "Funnel single-machine (scipy, CSR already built)", best, res.iterations,
                f"{np.abs(res.scores - ref).sum():.1e} vs {ref_name}",
                f"{t_nx / best:.1f}x networkx, both from a graph already in memory")
        for backend in ("torch",):
            res, t = run_single(src, dst, n, args.damping, args.tol, backend, repeat=reps)
            row(graph, n, m, f"Funnel single-machine ({res.backend})", t, res.iterations,
                f"{np.abs(res.scores - ref).sum():.1e} vs {ref_name}",
                f"{t_nx / t:.1f}x networkx, {gpu}, float64" if gpu and ref_name == "networkx"
                else (gpu or "no GPU this session: torch on CPU"))
        if spark is None:
            continue
        max_iter = args.spark_max_iter_big if big else 1000
        x, iters, conv, t_spark = run_spark(spark, src, dst, n, args.damping, args.tol, max_iter)
        if conv:
            row(graph, n, m, f"Funnel Spark DataFrame ({args.spark_master})", t_spark, iters,
                f"{np.abs(x - ref).sum():.1e} vs {ref_name}", f"{t_spark / iters:.2f}s/iteration")
        else:  # capped: compare against the single-machine answer after the same number of iterations
            same = pagerank(adjacency(src, dst, n), args.damping, 0.0, iters).scores
            row(graph, n, m, f"Funnel Spark DataFrame ({args.spark_master})", t_spark, f"{iters} (capped)",
                f"{np.abs(x - same).sum():.1e} vs scipy after {iters} iterations",
                f"{t_spark / iters:.2f}s/iteration; ~{t_spark / iters * single.iterations:.0f}s for "
                f"{single.iterations} iterations")
    spark_version = spark.version if spark is not None else "not run"
    if spark is not None:
        spark.stop()

    header = [
        "# PageRank: networkx vs Funnel single-machine vs Funnel Spark", "",
        f"Machine: {machine()}; Spark {spark_version}.",
        f"Command: `{command()}`", "",
        f"Damping {args.damping}; every method stops when the L1 change between iterations is below {args.tol:g} "
        "(networkx gets tol / N, its own rule being N * tol). Seconds are wall time of the PageRank call "
        "from integer edge arrays (networkx: from a built DiGraph; torch: including the copy to the device), "
        f"best of {args.repeat} calls on graphs up to 100k nodes and one call on bigger ones; Spark: one run. "
        + (f"GPU: {gpu}." if gpu else "GPU figure: not measured (no GPU on this machine)."),
        "",
        "| graph | nodes | edges (with duplicates) | method | seconds | iterations | L1 error | note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    publish("\n".join(header + rows) + "\n", args.out)


if __name__ == "__main__":
    main()

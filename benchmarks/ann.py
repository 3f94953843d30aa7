"""ANN benchmark for the vector index (`funnel.index.vectors`): FAISS IVF and HNSW against exact inner-product
search on >= 100k 384-d unit vectors: recall@100 of the approximate top 100 against the exact top 100,
per-query latency (one query at a time, one thread) and the speed-up over exact search, side by side.

Vectors: the SciFact document embeddings of a Funnel vector index (``--vectors HOME/index/dense``,
5,183 all-MiniLM-L6-v2 vectors) plus synthetic neighbours up to ``--n``: each a random real
embedding plus isotropic Gaussian noise (cosine ~0.8 to its source), renormalised, so the data keeps
the real embeddings' shape and cluster structure. Queries: real query embeddings (``--queries-npy``)
or, without them, held-out perturbed document vectors. Without ``--vectors`` everything is synthetic
(clustered unit vectors).

    .venv/bin/python benchmarks/ann.py --vectors .funnel/index/dense --data /work/shared/data/scifact
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.report import publish  # noqa: E402
from funnel.index.vectors import VectorIndex, build_ann  # noqa: E402


def make_vectors(base: np.ndarray, n: int, sigma: float, rng) -> np.ndarray:
    extra = n - len(base)
    src = base[rng.integers(0, len(base), extra)]
    noisy = src + sigma * rng.standard_normal(src.shape).astype(np.float32)
    vecs = np.concatenate([base, noisy]).astype(np.float32)
    return vecs / np.linalg.norm(vecs, axis=1, keepdims=True)


def timed_search(index, queries: np.ndarray, k: int):
    """One query at a time: (rows (nq, k), per-query ms)."""
    rows, ms = [], []
    for q in queries:
        t0 = time.perf_counter()
        _, r = index.search(q[None, :], k)
        ms.append((time.perf_counter() - t0) * 1e3)
        rows.append(r[0])
    return np.array(rows), np.array(ms)


def recall_at(exact: np.ndarray, approx: np.ndarray) -> float:
    k = exact.shape[1]
    return float(np.mean([len(set(a.tolist()) & set(b.tolist())) / k for a, b in zip(exact, approx)]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vectors", help="a Funnel vector index folder (real embeddings to start from)")
    ap.add_argument("--data", help="BEIR folder: its queries are embedded with the index's model (minilm)")
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--sigma", type=float, default=0.04, help="noise per dimension of synthetic vectors")
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1, help="FAISS threads while searching")
    ap.add_argument("--build-threads", type=int, default=2, help="FAISS threads while building")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "ann.md"))
    args = ap.parse_args()

    import faiss

    faiss.omp_set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    source = "synthetic clustered"
    if args.vectors:
        vi = VectorIndex(args.vectors, backend="exact")
        base = vi.vectors
        source = f"{len(base):,} real SciFact MiniLM vectors + synthetic neighbours"
    else:
        centers = rng.standard_normal((1000, 384)).astype(np.float32)
        base = centers / np.linalg.norm(centers, axis=1, keepdims=True)
    vecs = make_vectors(base, args.n + args.queries, args.sigma, rng)
    if args.data and args.vectors:
        from funnel.crawler.beir import read_queries
        from funnel.ranking.models.dual_encoder import load_dual_encoder

        texts = list(read_queries(Path(args.data)).values())[: args.queries]
        queries = load_dual_encoder(vi.meta.get("model", "minilm"), "cpu").encode_queries(texts)
        vecs = vecs[: args.n]
        qsource = f"{len(queries)} real SciFact query embeddings"
    else:
        queries, vecs = vecs[args.n:], vecs[: args.n]  # held out, never indexed
        qsource = f"{len(queries)} held-out perturbed vectors"
    n, dim = vecs.shape
    print(f"{n:,} vectors x {dim}, {len(queries)} queries ({qsource}), k={args.k}, {args.threads} thread(s)")

    rows = []
    t0 = time.perf_counter()
    exact_index = build_ann(vecs, "exact")
    build_exact = time.perf_counter() - t0
    exact_rows, exact_ms = timed_search(exact_index, queries, args.k)
    rows.append(dict(name="exact (IndexFlatIP)", params="-", build=build_exact, recall=1.0, ms=exact_ms))
    nlist = int(4 * np.sqrt(n))
    configs = [("ivf", dict(nlist=nlist, nprobe=p), f"nlist={nlist}, nprobe={p}") for p in (32, 64, 128)]
    configs += [("hnsw", dict(hnsw_m=16, ef_construction=100, ef_search=ef), f"M=16, efC=100, efSearch={ef}")
                for ef in (128, 256, 512)]
    built = {}
    for kind, params, label in configs:
        key = (kind, params.get("nlist"), params.get("hnsw_m"))
        t0 = time.perf_counter()
        if key not in built:
            faiss.omp_set_num_threads(args.build_threads)
            built[key] = build_ann(vecs, kind, **params)
            faiss.omp_set_num_threads(args.threads)
            build = time.perf_counter() - t0
        else:
            build = float("nan")  # same structure, only the search parameter changes
        index = built[key]
        if kind == "ivf":
            index.nprobe = params["nprobe"]
        else:
            index.hnsw.efSearch = params["ef_search"]
        got, ms = timed_search(index, queries, args.k)
        rows.append(dict(name=kind.upper(), params=label, build=build, recall=recall_at(exact_rows, got), ms=ms))
        print(f"  {kind} {label}: recall@{args.k} {rows[-1]['recall']:.4f}, p50 {np.median(ms):.2f} ms")

    exact_p50 = float(np.median(exact_ms))
    lines = [
        "# Vector search: FAISS ANN vs exact inner product",
        "",
        f"Machine: {platform.machine()} 2-core CPU VM, no GPU (shared with other jobs; {args.threads} FAISS thread searching, {args.build_threads} building).",
        f"Command: `.venv/bin/python benchmarks/ann.py {' '.join(sys.argv[1:])}`",
        f"Data: {n:,} x {dim} unit vectors ({source}; sigma={args.sigma}); queries: {qsource}.",
        f"Recall@{args.k} = overlap of the approximate top {args.k} with the exact top {args.k}. "
        "Latency: one query at a time.",
        "",
        f"| index | parameters | build s | recall@{args.k} | p50 ms | p99 ms | QPS | speed-up vs exact |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        p50, p99 = float(np.median(r["ms"])), float(np.percentile(r["ms"], 99))
        build = "-" if np.isnan(r["build"]) else f"{r['build']:.1f}"
        lines.append(f"| {r['name']} | {r['params']} | {build} | {r['recall']:.4f} | {p50:.2f} | {p99:.2f} | "
                     f"{1000 / np.mean(r['ms']):.0f} | {exact_p50 / p50:.1f}x |")
    publish("\n".join(lines) + "\n", args.out)


if __name__ == "__main__":
    main()

"""Query latency of a sharded index served three ways, on the synthetic corpus: the single index in
this process, its shards in this process (`ShardedBm25Retriever`), and `funnel serve --shard I`
processes gathered over HTTP (`funnel.index.remote.RemoteShardedRetriever` here, then a
`funnel serve --shard-urls` front's /search), next to a plain `funnel serve` of the single index.

Builds (once, kept under --work) a store of the first N synthetic documents
(`benchmarks/synthetic_corpus.py`), its single index (local builder) and the same documents as S
shards (one segment per contiguous seq range and the global statistics, as the Spark job writes them:
`tests/index/test_shards.build_sharded`). Queries: three words of mid frequency (ranks 100-20,000),
as `benchmarks/spark_index.py` draws them. One client, one query at a time (p50/p99 of sequential
queries; QPS = 1 / mean); the API rows run BM25 recall alone (``pipeline.stages = "recall"``, top
``pipeline.recall_k`` from every shard, k results returned). Every row is checked against the single
index: ids and scores of every query. Writes ``benchmarks/results/shard_serve.md``.

    .venv/bin/python benchmarks/shard_serve.py --docs 100000 --shards 4
"""
from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.report import command, machine, publish  # noqa: E402
from benchmarks.synthetic_corpus import make_store, vocabulary  # noqa: E402
from funnel.core.store import DocumentStore  # noqa: E402
from funnel.index.analyze import Analyzer  # noqa: E402
from funnel.index.builder import build_index  # noqa: E402
from funnel.index.remote import RemoteShardedRetriever  # noqa: E402
from funnel.index.searcher import Bm25Retriever  # noqa: E402
from tests.index.test_shards import build_sharded  # noqa: E402
from tests.servers import funnel_serve  # noqa: E402

RECALL_ONLY = ["--set", 'pipeline.recall="bm25"', "--set", 'pipeline.stages="recall"']


def build_homes(work: Path, n_docs: int, n_shards: int) -> tuple[Path, Path, dict]:
    """(single-index home, sharded home, build seconds), each built once and kept."""
    single, sharded = work / f"single-{n_docs}", work / f"sharded-{n_docs}-{n_shards}"
    seconds = {}
    single.mkdir(parents=True, exist_ok=True)
    make_store(single, n_docs)
    if not (single / "index" / "manifest.json").exists():
        t0 = time.perf_counter()
        with DocumentStore(single / "store.sqlite", readonly=True) as store:
            build_index(store, single / "index", Analyzer(), progress=False)
        seconds["single"] = time.perf_counter() - t0
    if not (sharded / "index" / "manifest.json").exists():
        sharded.mkdir(parents=True, exist_ok=True)
        shutil.copy(single / "store.sqlite", sharded / "store.sqlite")
        t0 = time.perf_counter()
        build_sharded(sharded / "store.sqlite", sharded / "index", n_shards)
        seconds["sharded"] = time.perf_counter() - t0
    return single, sharded, seconds


def timed(runs: list, queries: list[str], rounds: int) -> list[np.ndarray]:
    """Milliseconds of each query, for each of `runs`, after a warm-up of 20 queries (the OS page cache).
    Interleaved: query by query, every run in turn, `rounds` times over, so a burst of another job's load
    falls on all of them alike rather than on whichever ran then."""
    for run in runs:
        for q in queries[:20]:
            run(q)
    ms: list[list[float]] = [[] for _ in runs]
    for _ in range(rounds):
        for q in queries:
            for i, run in enumerate(runs):
                t0 = time.perf_counter()
                run(q)
                ms[i].append((time.perf_counter() - t0) * 1e3)
    return [np.array(m) for m in ms]


def same_as(reference, retriever, queries: list[str], k: int) -> bool:
    for q in queries:
        a, b = reference.search(q, k), retriever.search(q, k)
        if a.doc_ids != b.doc_ids or not np.array_equal(a.scores, b.scores):
            return False
    return True


def same_hits(reference, http: httpx.Client, queries: list[str], k: int) -> bool:
    for q in queries:
        a = reference.search(q, k)
        hits = http.post("/search", json={"q": q, "k": k}).json()["hits"]
        if [h["doc_id"] for h in hits] != a.doc_ids or \
                not np.allclose([h["score"] for h in hits], a.scores, rtol=0, atol=1e-6):
            return False
    return True


def rss_mb(served) -> float:
    import psutil

    return psutil.Process(served.proc.pid).memory_info().rss / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3, help="times over the queries (every way in turn, query by query)")
    ap.add_argument("--work", default=os.environ.get("TMPDIR", "/tmp") + "/funnel-shard-serve")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "shard_serve.md"))
    args = ap.parse_args()
    load_before = os.getloadavg()[0]
    single_home, sharded_home, build_s = build_homes(Path(args.work), args.docs, args.shards)
    rng = np.random.default_rng(0)
    words = vocabulary(300_000)
    queries = [" ".join(words[rng.integers(100, 20_000, 3)]) for _ in range(args.queries)]
    k = args.k

    single = Bm25Retriever.open(single_home / "index")
    sharded = Bm25Retriever.open(sharded_home / "index")
    with contextlib.ExitStack() as stack:
        shards = [stack.enter_context(funnel_serve(sharded_home, ("--shard", str(i)))) for i in range(args.shards)]
        urls = ",".join(s.url for s in shards)
        remote = stack.enter_context(contextlib.closing(RemoteShardedRetriever.open(sharded_home / "index", urls)))
        front = stack.enter_context(funnel_serve(sharded_home, ("--shard-urls", urls), RECALL_ONLY))
        whole = stack.enter_context(funnel_serve(single_home, (), RECALL_ONLY))
        front_http = stack.enter_context(httpx.Client(base_url=front.url, timeout=60))
        whole_http = stack.enter_context(httpx.Client(base_url=whole.url, timeout=60))
        api = "POST /search (BM25 recall alone)"
        ways = [  # (how, queried from, one query, identical to the single index)
            ("single index", "this process", lambda q: single.search(q, k), "reference"),
            (f"{args.shards} shards, scatter-gather", "this process", lambda q: sharded.search(q, k),
             same_as(single, sharded, queries, k)),
            (f"{args.shards} `funnel serve --shard` processes, gathered over HTTP",
             "this process (`RemoteShardedRetriever`)", lambda q: remote.search(q, k),
             same_as(single, remote, queries, k)),
            ("single index, `funnel serve`", api,
             lambda q: whole_http.post("/search", json={"q": q, "k": k}).raise_for_status(),
             same_hits(single, whole_http, queries, k)),
            (f"{args.shards} shard processes + `funnel serve --shard-urls` front", api,
             lambda q: front_http.post("/search", json={"q": q, "k": k}).raise_for_status(),
             same_hits(single, front_http, queries, k)),
        ]
        times = timed([w[2] for w in ways], queries, args.rounds)
        shard_rss = " + ".join(f"{rss_mb(s):.0f}" for s in shards)
        rss = ["", "", f"shards {shard_rss}", f"{rss_mb(whole):.0f}", f"{rss_mb(front):.0f}; shards {shard_rss}"]
        rows = [(how, where, ms, same, mb) for (how, where, _, same), ms, mb in zip(ways, times, rss)]
    load_after = os.getloadavg()[0]

    table = ["| index served | queried from | p50 ms | p99 ms | QPS (one client) | identical to the single index | "
             "server RSS MB |", "|---|---|---:|---:|---:|---|---|"]
    for how, where, ms, same, rss in rows:
        table.append(f"| {how} | {where} | {np.percentile(ms, 50):.2f} | {np.percentile(ms, 99):.2f} | "
                     f"{1e3 / ms.mean():.0f} | {same} | {rss} |")
    built = ", ".join(f"{name} {s:.1f} s" for name, s in build_s.items()) or "kept from an earlier run"
    text = "\n".join([
        "# Sharded index: in one process vs `funnel serve --shard` processes behind a front", "",
        f"Machine: {machine()}; load average {load_before:.1f} before, {load_after:.1f} after (other jobs share it).",
        f"Command: `{command()}`", "",
        f"Corpus: the first {args.docs:,} documents of `benchmarks/synthetic_corpus.py` (Zipfian vocabulary of 300k "
        f"pseudo-words, log-normal lengths); {args.shards} shards of contiguous seq ranges with the global "
        f"statistics (built: {built}). {len(queries)} three-word queries of mid-frequency terms, BM25 top {k}, "
        f"one at a time from one client (QPS = 1 / mean latency), {args.rounds} rounds; the five ways are timed "
        "interleaved, query by query, so other jobs' load falls on all alike (and the in-process rows find CPU "
        "caches the servers' work has just used: slower than timed alone, `spark_index.md`). The API rows run BM25 recall alone "
        "(`pipeline.stages = \"recall\"`: every shard sends its top `pipeline.recall_k` = 200, the front keeps "
        f"{k}); every shard process and the front run on this same machine. Identical: ids and scores of every "
        "query equal the single index's (scores bit for bit in this process, to 1e-6 through /search's JSON).", "",
        *table, "",
        "Server RSS: resident memory of each server process after its queries (the shards' memory maps of "
        "the index count where touched).",
    ]) + "\n"
    publish(text, args.out)


if __name__ == "__main__":
    main()

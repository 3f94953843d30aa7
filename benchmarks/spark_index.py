"""Spark index build vs the local builder: docs/s, local[1] vs local[2], and proof the indexes are identical.

Corpora: BEIR SciFact (``../shared/data/scifact``) and the javadoc site (Debian ``openjdk-17-doc``, pages
parsed from disk). For each: the local builder (``funnel index --rebuild``'s code) and the Spark job on
``local[1]`` and ``local[2]`` build from the same store; the Spark indexes must hold the same term
dictionary, postings, document lengths and ids, and give bit-identical BM25 scores for every query
(SciFact: every dev query; javadoc: the titles of 500 pages). Prints a Markdown table and writes
``benchmarks/results/spark_index.md``.

    .venv/bin/python benchmarks/spark_index.py [--scifact DIR] [--shards 4]
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.report import publish  # noqa: E402
from funnel.core.config import SparkConfig  # noqa: E402
from funnel.core.store import DocumentStore  # noqa: E402
from funnel.index.analyze import Analyzer  # noqa: E402
from funnel.index.builder import build_index  # noqa: E402
from funnel.index.searcher import Bm25Retriever, IndexReader  # noqa: E402
from funnel.index.segments import read_segment  # noqa: E402


def identical(a_dir: Path, b_dir: Path, queries: list[str]) -> str:
    ra, rb = IndexReader(a_dir), IndexReader(b_dir)
    sa = read_segment(a_dir / ra.manifest["segments"][0]["name"])
    sb = read_segment(b_dir / rb.manifest["segments"][0]["name"])
    if sa.terms != sb.terms or sa.doc_ids != sb.doc_ids:
        return "DIFFERENT terms/doc ids"
    for name in ("offsets", "doc_ords", "tfs", "doc_lens"):
        if not np.array_equal(getattr(sa, name), getattr(sb, name)):
            return f"DIFFERENT {name}"
    ba, bb = Bm25Retriever(ra), Bm25Retriever(rb)
    for q in queries:
        if not np.array_equal(ba.score(q), bb.score(q)):
            return f"DIFFERENT scores for {q!r}"
    return f"identical postings; identical BM25 scores on {len(queries)} queries"


def prepare_scifact(home: Path, data: Path) -> list[str]:
    from funnel.crawler.beir import ingest_beir

    store_path = home / "store.sqlite"
    with DocumentStore(store_path) as store:
        if store.count() == 0:
            ingest_beir(data, store, name="scifact")
        qrels = store.qrels("scifact", "dev")
        queries = store.queries("scifact")
        store.export_parquet(home / "parquet")
        return [queries[q] for q in sorted(qrels)]


def prepare_javadoc(home: Path) -> list[str]:
    from funnel.crawler.sites import debian_site
    from funnel.pipelines.site_files import load_site

    with DocumentStore(home / "store.sqlite") as store:
        if store.count() == 0:
            load_site(store, debian_site("openjdk-17-doc"), "http://127.0.0.1:8000/")
        store.export_parquet(home / "parquet")
        titles = [d.title for d in store.iter_docs() if d.title]
    return titles[:: max(1, len(titles) // 500)][:500]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scifact", default=str(ROOT.parent / "shared" / "data" / "scifact"))
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--work", default=str(ROOT / ".funnel" / "bench"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "spark_index.md"))
    args = ap.parse_args()
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from funnel.pipelines.index_job import run_index_job
    from funnel.pipelines.session import spark_session

    work = Path(args.work)
    corpora = []
    if (Path(args.scifact) / "corpus.jsonl").exists():
        corpora.append(("SciFact", work / "scifact", lambda h: prepare_scifact(h, Path(args.scifact))))
    corpora.append(("javadoc (openjdk-17-doc)", work / "javadoc", prepare_javadoc))
    rows = []
    analyzer = Analyzer()
    for name, home, prepare in corpora:
        home.mkdir(parents=True, exist_ok=True)
        queries = prepare(home)
        local_dir = home / "index-local"
        shutil.rmtree(local_dir, ignore_errors=True)
        with DocumentStore(home / "store.sqlite", readonly=True) as store:
            n = store.count()
            t0 = time.perf_counter()
            build_index(store, local_dir, analyzer, incremental=False, progress=False)
            t_local = time.perf_counter() - t0
        rows.append(f"| {name} | {n:,} | local builder (1 process) | {t_local:.1f} | {n / t_local:,.0f} | 1.00 | reference |")
        print(rows[-1], flush=True)
        for master in ("local[1]", "local[2]"):
            spark = spark_session(SparkConfig(master=master, driver_memory="4g", shuffle_partitions=args.shards))
            spark.range(10).count()  # JVM and Python workers up: start-up is not build time
            out_dir = home / f"index-spark-{master[6]}"
            shutil.rmtree(out_dir, ignore_errors=True)
            t0 = time.perf_counter()
            run_index_job(spark, home / "parquet", out_dir, analyzer, incremental=False, n_shards=args.shards)
            t = time.perf_counter() - t0
            spark.stop()
            verdict = identical(local_dir, out_dir, queries)
            rows.append(f"| {name} | {n:,} | Spark {master}, {args.shards} shards | {t:.1f} | {n / t:,.0f} | "
                        f"{t_local / t:.2f} | {verdict} |")
            print(rows[-1], flush=True)
    header = [
        "# Spark index build vs local builder", "",
        "Machine: 2-core CPU VM, no GPU, shared with other jobs (timings are noisy).",
        f"Command: `.venv/bin/python benchmarks/spark_index.py --shards {args.shards}`", "",
        "Seconds: building and publishing the index from the store (local: SQLite; Spark: its Parquet export, "
        "Spark session already started). Speed-up is against the local builder. Identity: the Spark index's term "
        "dictionary, postings, document lengths and ids equal the local index's array for array, and BM25 "
        "scores of every document are bit-identical for every query (SciFact: all dev queries).", "",
        "| corpus | docs | build | seconds | docs/s | speed-up | identical to local |",
        "|---|---|---|---|---|---|---|",
    ]
    publish("\n".join(header + rows) + "\n", args.out)


if __name__ == "__main__":
    main()

"""Spark index build vs the local builder: docs/s, local[1] vs local[2], and proof the indexes are identical.

Corpora: BEIR SciFact (``../shared/data/scifact``) and the javadoc site (Debian ``openjdk-17-doc``, pages
parsed from disk). For each: the local builder (``funnel index --rebuild``'s code) and the Spark job on
``local[1]`` and ``local[2]`` build from the same store; the Spark indexes must hold the same term
dictionary, postings, document lengths and ids, and give bit-identical BM25 scores for every query
(SciFact: every dev query; javadoc: the titles of 500 pages). Prints a Markdown table and writes
``benchmarks/results/spark_index.md``.

    .venv/bin/python benchmarks/spark_index.py [--scifact DIR] [--shards 4]
    .venv/bin/python benchmarks/spark_index.py --synthetic 100000,300000,1000000 [--work DIR]
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


class TreeMemory:
    """Peak resident memory of a process tree, sampled every `every_s` seconds in a thread: the
    driver (the root process and any JVM it started) apart from everything else in the tree (in local
    mode: the executors' Python workers under the driver's JVM; on a standalone cluster, the executors
    run under the workers' JVMs, outside the driver's tree)."""

    def __init__(self, pid: int, every_s: float = 0.2):
        import threading

        import psutil

        self.root = psutil.Process(pid)
        self.driver_mb = self.other_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every_s,), daemon=True)
        self._thread.start()

    def _run(self, every_s: float) -> None:
        import psutil

        while not self._stop.wait(every_s):
            try:
                procs = [self.root, *self.root.children(recursive=True)]
                driver = other = 0
                for p in procs:
                    try:
                        rss = p.memory_info().rss
                        is_driver = p.pid == self.root.pid or (p.ppid() == self.root.pid and "java" in p.name())
                    except psutil.Error:
                        continue
                    if is_driver:
                        driver += rss
                    else:
                        other += rss
            except psutil.Error:
                continue
            self.driver_mb = max(self.driver_mb, driver / 2**20)
            self.other_mb = max(self.other_mb, other / 2**20)

    def stop(self) -> "TreeMemory":
        self._stop.set()
        self._thread.join()
        return self


def timed_run(argv: list[str], env: dict | None = None) -> tuple[float, TreeMemory]:
    """Run `argv` as a fresh process: (seconds, its sampled peak memory)."""
    import subprocess

    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    mem = TreeMemory(proc.pid)
    out = proc.communicate()[0]
    t = time.perf_counter() - t0
    mem.stop()
    if proc.returncode:
        raise SystemExit(f"{' '.join(argv)} failed:\n{out[-3000:]}")
    return t, mem


LOCAL_BUILD = ("import sys; from funnel.core.store import DocumentStore; from funnel.index.analyze import Analyzer; "
               "from funnel.index.builder import build_index; "
               "store = DocumentStore(sys.argv[1], readonly=True); "
               "build_index(store, sys.argv[2], Analyzer(), incremental=False, progress=False); store.close()")


def latency(retriever, queries: list[str], k: int = 10) -> tuple[float, float]:
    for q in queries[:20]:
        retriever.search(q, k)  # warm the term cache of the OS pages, not of the queries timed
    ms = []
    for q in queries:
        t0 = time.perf_counter()
        retriever.search(q, k)
        ms.append((time.perf_counter() - t0) * 1e3)
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def synthetic_store(work: Path, n: int) -> Path:
    """HOME for the first `n` documents of the synthetic corpus, with its store and Parquet export."""
    from benchmarks.synthetic_corpus import make_store

    home = (work / f"synthetic-{n}").resolve()
    home.mkdir(parents=True, exist_ok=True)
    make_store(home, n)
    if not (home / "parquet" / "docs.parquet").exists():
        with DocumentStore(home / "store.sqlite", readonly=True) as store:
            store.export_parquet(home / "parquet")
    return home


def synthetic(args) -> str:
    """Local builder vs sharded Spark builds on the synthetic corpus at each size of `args.synthetic`:
    the 2-worker standalone cluster at every size (its driver's memory as N grows), local[1] and
    local[2] at the largest; sharded = single index on every query; query latency of 1 vs N shards.
    Returns a Markdown section."""
    from benchmarks.synthetic_corpus import vocabulary
    from funnel.pipelines.standalone import cluster_env, start_cluster

    sizes = sorted(int(x) for x in str(args.synthetic).split(","))
    work = Path(args.work)
    rng = np.random.default_rng(1)
    words = vocabulary(300_000)  # the generator's words, same seed: ranks 100-20,000 are mid-frequency terms
    queries = [" ".join(words[rng.integers(100, 20_000, 3)]) for _ in range(args.queries)]
    rows, lat_rows, same_all = [], [], []
    cluster = start_cluster(work / "cluster", workers=2, cores=1, memory="4g") if not args.no_cluster else None
    try:
        for n in sizes:
            home = synthetic_store(work, n)
            load = os.getloadavg()[0]
            shutil.rmtree(home / "index-local", ignore_errors=True)
            t_local, mem = timed_run([sys.executable, "-c", LOCAL_BUILD, str(home / "store.sqlite"),
                                      str(home / "index-local")])
            rows.append(f"| {n:,} | local builder (1 process) | 1 | {t_local:.1f} | {n / t_local:,.0f} | 1.00 | "
                        f"{mem.driver_mb:,.0f} | - | {load:.1f} |")
            print(rows[-1], flush=True)
            base = [sys.executable, "-m", "funnel.cli.main", "--home", str(home), "-q", "pipeline", "index",
                    "--input", str(home / "parquet"), "--shards", str(args.shards)]
            runs = [("Spark local[1]", "local[1]", None), ("Spark local[2]", "local[2]", None)] if n == sizes[-1] else []
            if cluster is not None:
                runs.append(("Spark standalone, 2 workers x 1 core", cluster.master_url, cluster_env()))
            for name, master, env in runs:
                load = os.getloadavg()[0]
                t, mem = timed_run(base + ["--master", master], env)
                workers = f"{mem.other_mb:,.0f}" if master.startswith("local") else "(on the workers)"
                rows.append(f"| {n:,} | {name} | {args.shards} | {t:.1f} | {n / t:,.0f} | {t_local / t:.2f} | "
                            f"{mem.driver_mb:,.0f} | {workers} | {load:.1f} |")
                print(rows[-1], flush=True)
            if not runs:  # no Spark build at this size (--no-cluster): nothing of this size to compare
                continue
            single, sharded = Bm25Retriever.open(home / "index-local"), Bm25Retriever.open(home / "index")
            same_all.append(all(a.doc_ids == b.doc_ids and np.array_equal(a.scores, b.scores)
                                for a, b in ((single.search(q, 10), sharded.search(q, 10)) for q in queries)))
            if n == sizes[-1]:
                lat = [("1 (single index)", single),
                       (f"{len(sharded.shards)} shards, scatter-gather in one process", sharded)]
                lat_rows = [f"| {name} | {p50:.2f} | {p99:.2f} |" for name, r in lat for p50, p99 in [latency(r, queries)]]
    finally:
        if cluster is not None:
            cluster.stop()
    sizes_s = ", ".join(f"{n:,}" for n in sizes)
    return "\n".join([
        f"## Synthetic corpus, {sizes_s} documents", "",
        f"Command: `.venv/bin/python benchmarks/spark_index.py --synthetic {args.synthetic} --shards {args.shards}` "
        "(corpus: `benchmarks/synthetic_corpus.py`, Zipfian vocabulary of 300k pseudo-words, s = 1.07, "
        "log-normal lengths, median ~165 tokens; each size is the first N documents of the same corpus).", "",
        "Every build runs as a fresh process, timed from launch to exit (JVM start included). Local builder: "
        "`funnel index --rebuild`'s code, reading the SQLite store, holding the whole index in memory. Spark: "
        f"`funnel pipeline index --shards {args.shards} --input PARQUET --master M`, each executor writing its shard "
        "to the shared folder; the driver receives counts only and reads the shards' term dictionaries one at a "
        "time for the global document frequencies (no postings). Driver MB: peak resident memory (sampled every "
        "0.2 s) of the driver process plus the JVM it starts; in local mode that JVM also runs the executors, "
        "whose Python workers are the next column; on the standalone cluster the executors run under the workers "
        "(not the driver). Load: the 1-minute load average before the row (2 cores).", "",
        "| docs | build | shards | seconds | docs/s | vs local builder | driver MB | local-mode Python workers MB | load |",
        "|---|---|---|---|---|---|---|---|---|", *rows, "",
        f"Sharded and single index give identical ids and scores on all {len(queries)} three-word queries of "
        f"mid-frequency terms at every size built with Spark: {all(same_all)} ({', '.join(str(x) for x in same_all)}).", "",
        f"Query latency at {sizes[-1]:,} documents, BM25 top 10, the same queries:", "",
        "| index | p50 ms | p99 ms |", "|---|---|---|", *lat_rows, ""])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scifact", default=str(ROOT.parent / "shared" / "data" / "scifact"))
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--work", default=str(ROOT / ".funnel" / "bench"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "spark_index.md"))
    ap.add_argument("--synthetic", default="", metavar="N[,N...]",
                    help="only the synthetic-corpus section, at these sizes (replaces that section of --out)")
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--no-cluster", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    if args.synthetic:
        from benchmarks.report import machine

        section = synthetic(args)
        out = Path(args.out)
        old = out.read_text("utf-8") if out.exists() else "# Spark index build vs local builder\n"
        old = old.split("\n## Synthetic corpus")[0].rstrip("\n")
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        publish(old + f"\n\n{section}\nMachine: {machine()}; load average at the end (1, 5, 15 min): {load}.\n",
                args.out)
        return
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

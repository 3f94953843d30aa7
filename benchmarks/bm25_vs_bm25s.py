"""Funnel BM25 vs bm25s on SciFact dev, side by side in one process.

Prints one Markdown table: nDCG@10, Recall@100 (same k1, b and Lucene BM25 variant for both;
each with its own English stop words + Snowball stemmer tokenizer), index build docs/s
(tokenisation + indexing + saving), index load time, and single-thread queries/s at top-1000,
end to end (tokenising the query included) and retrieval only (pre-tokenised). bm25s runs its
fastest backend (numba) with n_threads=1; both are warmed up first; each timing is the best of
`--repeat` passes, the two systems timed back to back in each pass.

    python benchmarks/bm25_vs_bm25s.py [--data ../shared/data/scifact] [--out benchmarks/results/bm25_vs_bm25s.md]
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NUMBA_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import bm25s  # noqa: E402
import numpy as np  # noqa: E402
import Stemmer  # noqa: E402

from benchmarks.report import machine  # noqa: E402
from funnel.crawler.beir import read_corpus, read_qrels, read_queries  # noqa: E402
from funnel.core.config import AnalyzerConfig, BM25Config  # noqa: E402
from funnel.index.analyze import Analyzer  # noqa: E402
from funnel.index.builder import IndexWriter, build_segment, doc_text  # noqa: E402
from funnel.index.searcher import Bm25Retriever  # noqa: E402
from funnel.ranking.evaluate import evaluate, format_table  # noqa: E402


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "scifact"))
    ap.add_argument("--split", default="dev")
    ap.add_argument("--k", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "bm25_vs_bm25s.md"))
    args = ap.parse_args()

    cfg = BM25Config()
    docs = read_corpus(Path(args.data), source="beir")
    queries = read_queries(Path(args.data))
    qrels = read_qrels(Path(args.data), args.split)
    qids = sorted(qrels)
    qtexts = [queries[q] for q in qids]
    texts = [doc_text(d) for d in docs]
    ids = [d.doc_id for d in docs]
    n = len(docs)
    work = Path(tempfile.mkdtemp(prefix="bm25bench-"))
    rows = []
    stemmer = Stemmer.Stemmer("english")
    # bm25s' token pattern (\w\w+) drops one-character words: compare like with like
    like_bm25s = AnalyzerConfig(min_token_len=2)
    analyzer = Analyzer(like_bm25s)

    # ---- the two systems' operations ------------------------------------
    def funnel_build():
        shutil.rmtree(work / "funnel", ignore_errors=True)
        fresh = Analyzer(like_bm25s)  # a cold word cache, as a new indexing process has
        seg = build_segment(docs, fresh, progress=False)
        IndexWriter(work / "funnel", fresh).rebuild(seg, max_seq=0)

    def bm25s_build():
        shutil.rmtree(work / "bm25s", ignore_errors=True)
        tok = bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False)
        model = bm25s.BM25(k1=cfg.k1, b=cfg.b, method="lucene", backend="numba")
        model.index(tok, show_progress=False)
        model.save(str(work / "bm25s"))

    funnel_build()
    bm25s_build()
    retr = Bm25Retriever.open(work / "funnel", cfg)
    model = bm25s.BM25.load(str(work / "bm25s"), mmap=False)
    model.backend = "numba"
    qtoks = [analyzer(q) for q in qtexts]
    qt_pre = bm25s.tokenize(qtexts, stopwords="en", stemmer=stemmer, show_progress=False)

    def bm25s_retrieve(qt):
        return model.retrieve(qt, k=args.k, n_threads=1, show_progress=False, backend_selection="numba")

    def bm25s_e2e():
        return bm25s_retrieve(bm25s.tokenize(qtexts, stopwords="en", stemmer=stemmer, show_progress=False))

    for t in qtoks:  # warm-up: Funnel's per-term cache (as a serving process has), bm25s' numba JIT
        retr.search_terms(t, args.k)
    bm25s_retrieve(qt_pre)

    # Each operation is timed for both systems back to back, `repeat` times, so both see the same
    # machine load; the table shows each system's best time and the median of the paired ratios.
    ops = {
        "build": (funnel_build, bm25s_build),
        "load": (lambda: Bm25Retriever.open(work / "funnel", cfg), lambda: bm25s.BM25.load(str(work / "bm25s"), mmap=True)),
        "e2e": (lambda: [retr.search(q, args.k) for q in qtexts], bm25s_e2e),
        "retrieval": (lambda: [retr.search_terms(t, args.k) for t in qtoks], lambda: bm25s_retrieve(qt_pre)),
    }
    best = {op: [float("inf"), float("inf")] for op in ops}
    ratios = {op: [] for op in ops}
    for _ in range(args.repeat):
        for op, (f_fn, b_fn) in ops.items():
            tf, tb = best_of(f_fn, 1), best_of(b_fn, 1)
            best[op] = [min(best[op][0], tf), min(best[op][1], tb)]
            ratios[op].append(tb / tf)  # > 1: Funnel faster
    med = {op: float(np.median(r)) for op, r in ratios.items()}

    run = {}
    for q, text in zip(qids, qtexts):
        h = retr.search(text, args.k)
        run[q] = dict(zip(h.doc_ids, h.scores.tolist()))
    mf = evaluate(run, qrels)
    res, scores = bm25s_e2e()
    run = {q: {ids[int(d)]: float(s) for d, s in zip(res[i], scores[i]) if s > 0} for i, q in enumerate(qids)}
    mb = evaluate(run, qrels)
    nq = len(qids)
    for name, m, j in (("Funnel", mf, 0), (f"bm25s {bm25s.__version__} (numba)", mb, 1)):
        rows.append({"system": name, "nDCG@10": m["nDCG@10"], "Recall@100": m["Recall@100"],
                     "build docs/s": f"{n / best['build'][j]:,.0f}", "load s": f"{best['load'][j]:.3f}",
                     "QPS e2e": f"{nq / best['e2e'][j]:,.0f}", "QPS retrieval": f"{nq / best['retrieval'][j]:,.0f}"})
    rows.append({"system": "Funnel / bm25s (median paired ratio)",
                 "nDCG@10": mf["nDCG@10"] - mb["nDCG@10"], "Recall@100": mf["Recall@100"] - mb["Recall@100"],
                 "build docs/s": f"{med['build']:.2f}x", "load s": f"{med['load']:.2f}x",
                 "QPS e2e": f"{med['e2e']:.2f}x", "QPS retrieval": f"{med['retrieval']:.2f}x"})
    shutil.rmtree(work, ignore_errors=True)

    cols = ["system", "nDCG@10", "Recall@100", "build docs/s", "load s", "QPS e2e", "QPS retrieval"]
    report = "\n".join([
        "# BM25: Funnel vs bm25s",
        "",
        f"- machine: {machine()}",
        f"- command: `python benchmarks/bm25_vs_bm25s.py --split {args.split} --k {args.k}`",
        f"- data: SciFact ({n} docs), split `{args.split}` ({len(qids)} queries), top-{args.k}, "
        f"k1={cfg.k1}, b={cfg.b}, Lucene BM25; single thread; {args.repeat} paired passes",
        "- QPS e2e includes query tokenisation; QPS retrieval starts from tokenised queries. "
        "Quality rows of the ratio line are differences (Funnel minus bm25s); speed ratios are bm25s' time over "
        "Funnel's, so above 1x means Funnel is faster.",
        "",
        format_table(rows, cols),
        "",
    ])
    print(report)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(report)


if __name__ == "__main__":
    main()

"""Pseudo-relevance feedback (RM3) over BM25 vs BM25 alone, on each split's judged queries, through the
recall stage the funnel runs (`build_recall` with ``recall.prf``): nDCG@10, Recall@100, Recall@1000,
mean ms/query and the paired randomisation test's p against BM25 (`funnel.ranking.compare`).

Ingests and indexes the corpus into a temporary home (default settings), so it needs only the BEIR
folder. Each ``--grid docs,terms,weight`` is one RM3 setting (default: Anserini's 10,10,0.5 and a few
neighbours). Read the train rows to choose (more queries), the dev rows to confirm.
The CLI gives one row: `funnel eval-recall --data DATA --split S --route bm25 --set recall.prf=true`.

    python benchmarks/prf.py [--data ../shared/data/scifact] [--splits dev train] [--grid 10,10,0.5 ...]
                             [--out benchmarks/results/prf.md]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.report import command, machine, publish  # noqa: E402
from funnel.core.config import Config, PathsConfig  # noqa: E402
from funnel.core.judgements import read_qrels, read_queries  # noqa: E402
from funnel.core.store import DocumentStore  # noqa: E402
from funnel.crawler.beir import ingest_beir  # noqa: E402
from funnel.index.analyze import Analyzer  # noqa: E402
from funnel.index.builder import build_index  # noqa: E402
from funnel.ranking.compare import compare_runs  # noqa: E402
from funnel.ranking.evaluate import evaluate  # noqa: E402
from funnel.ranking.serving.recall import build_recall  # noqa: E402
from funnel.ranking.serving.stages import Candidates, Request  # noqa: E402

GRID = ("10,10,0.5", "10,20,0.5", "5,10,0.5", "10,10,0.3", "10,10,0.7", "10,10,0.8", "10,10,0.9", "10,20,0.9", "10,10,0.95")


def run_stage(stage, queries, qids, k):
    run, t0 = {}, time.perf_counter()
    for qid in qids:
        c = stage.rank(Request(query=queries[qid]), Candidates.empty(), k)
        run[qid] = dict(zip(c.doc_ids, c.scores.astype(float).tolist()))
    return run, (time.perf_counter() - t0) * 1e3 / max(len(qids), 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "scifact"))
    ap.add_argument("--splits", nargs="+", default=["dev", "train"])
    ap.add_argument("--grid", nargs="+", default=list(GRID), help="docs,terms,weight per RM3 setting")
    ap.add_argument("--k", type=int, default=1000)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "prf.md"))
    args = ap.parse_args()

    data = Path(args.data)
    queries = read_queries(data)
    lines = [f"# Pseudo-relevance feedback (RM3) over BM25 on {data.name}", "",
             f"Machine: {machine()}", "", f"Command: `{command()}`", "",
             "Recall stage `bm25` (`build_recall`), top 1000, default analyzer and BM25 (k1 0.9, b 0.4); "
             "RM3 = `recall.prf=true` with `prf_docs`, `prf_terms`, `prf_weight` (the original query's share). "
             "p: two-sided paired randomisation test of nDCG@10 against BM25 (10,000 sign flips, seed 0).", "",
             "| split | queries | route | docs | terms | weight | nDCG@10 | Recall@100 | Recall@1000 | "
             "nDCG@10 - BM25 | R@100 - BM25 | p (nDCG@10) | ms/query |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory(prefix="prf-bench-") as home:
        with DocumentStore(Path(home) / "store.sqlite") as store:
            ingest_beir(data, store)
            build_index(store, Path(home) / "index", Analyzer(), progress=False)
        base = Config(paths=PathsConfig(home=home))
        for split in args.splits:
            qrels = read_qrels(data, split)
            qids = sorted(q for q in qrels if q in queries)
            bm25_stage = build_recall(base, "bm25", k=args.k)
            bm25_run, bm25_ms = run_stage(bm25_stage, queries, qids, args.k)
            m = evaluate(bm25_run, qrels)
            lines.append(f"| {split} | {len(qids)} | BM25 | | | | {m['nDCG@10']:.4f} | {m['Recall@100']:.4f} | "
                         f"{m['Recall@1000']:.4f} | | | | {bm25_ms:.1f} |")
            for setting in args.grid:
                docs, terms, weight = setting.split(",")
                config = replace(base, recall=replace(base.recall, prf=True, prf_docs=int(docs),
                                                      prf_terms=int(terms), prf_weight=float(weight)))
                run, ms = run_stage(build_recall(config, "bm25", retriever=bm25_stage.retriever, k=args.k),
                                    queries, qids, args.k)
                r = evaluate(run, qrels)
                cmp = compare_runs(bm25_run, run, qrels, metrics=("nDCG@10",))
                lines.append(f"| {split} | {len(qids)} | BM25 + RM3 | {docs} | {terms} | {weight} | "
                             f"{r['nDCG@10']:.4f} | {r['Recall@100']:.4f} | {r['Recall@1000']:.4f} | "
                             f"{r['nDCG@10'] - m['nDCG@10']:+.4f} | {r['Recall@100'] - m['Recall@100']:+.4f} | "
                             f"{cmp.summary[0].p_randomisation:.3f} | {ms:.1f} |")
                print(lines[-1], flush=True)
    publish("\n".join(lines) + "\n", args.out)


if __name__ == "__main__":
    main()

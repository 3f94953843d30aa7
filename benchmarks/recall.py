"""Recall benchmark: BM25, dense (zero-shot MiniLM and the fine-tuned dual encoder) and hybrid recall
(RRF and normalised weighted fusion) side by side on a BEIR split, through the same stages the funnel
runs (`funnel.ranking.serving.recall`): nDCG@10, Recall@100, Recall@1000 and per-query latency.

Needs a home with the corpus ingested and indexed (`funnel ingest beir`, `funnel index`) and a vector
index (`funnel embed`). Each model given with ``--model NAME=PATH`` must share the index's document
tower (a query-side fine-tuned model does; a fully fine-tuned one needs its own `funnel embed`).

    .venv/bin/python benchmarks/recall.py --home .funnel --data /work/shared/data/scifact \
        --model minilm=minilm --model tuned=.funnel/models/dual-encoder
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.report import command, machine, publish  # noqa: E402
from funnel.core.judgements import read_qrels, read_queries  # noqa: E402
from funnel.core.config import load_config  # noqa: E402
from funnel.ranking.evaluate import evaluate  # noqa: E402
from funnel.ranking.serving.recall import build_recall  # noqa: E402
from funnel.ranking.serving.stages import Candidates, Request  # noqa: E402


def run_stage(stage, queries: dict[str, str], qids: list[str], k: int):
    run, ms = {}, []
    stage.rank(Request(query=queries[qids[0]]), Candidates.empty(), k)  # warm-up (lazy loads, caches)
    for qid in qids:
        t0 = time.perf_counter()
        c = stage.rank(Request(query=queries[qid]), Candidates.empty(), k)
        ms.append((time.perf_counter() - t0) * 1e3)
        run[qid] = dict(zip(c.doc_ids[:k], c.scores[:k].astype(float).tolist()))
    return run, np.array(ms)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--home", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", default="dev")
    ap.add_argument("--model", action="append", default=[], metavar="NAME=PATH[@HOME]",
                    help="dense query encoder(s) to compare (default: minilm=minilm); @HOME: a home whose vector "
                         "index that model built (a fully fine-tuned encoder has its own document vectors)")
    ap.add_argument("-k", type=int, default=1000)
    ap.add_argument("--set", action="append", default=[], dest="overrides", help="config override")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "recall.md"))
    args = ap.parse_args()

    config = load_config(None, [f"paths.home={json.dumps(args.home)}", *args.overrides])
    config = replace(config, recall=replace(config.recall, bm25_k=args.k, dense_k=args.k))
    qrels = read_qrels(Path(args.data), args.split)
    queries = read_queries(Path(args.data))
    qids = sorted(q for q in qrels if q in queries)
    judged = {q: qrels[q] for q in qids}
    models = [m.split("=", 1) for m in (args.model or ["minilm=minilm"])]

    plans = [("BM25", "bm25", None, config)]
    for name, spec in models:
        path, _, home = spec.partition("@")
        mc = replace(config, paths=replace(config.paths, home=home)) if home else config
        plans.append((f"dense ({name})", "dense", path, mc))
        for fusion in ("rrf", "weighted"):
            c = replace(mc, recall=replace(mc.recall, fusion=fusion))
            plans.append((f"hybrid {fusion.upper() if fusion == 'rrf' else 'weighted'} ({name})", "hybrid", path, c))
    rows = []
    for label, route, model, cfg in plans:
        stage = build_recall(cfg, route, model=model)
        run, ms = run_stage(stage, queries, qids, args.k)
        m = evaluate(run, judged)
        rows.append((label, m, ms))
        print(f"{label}: nDCG@10 {m['nDCG@10']:.4f}  R@100 {m['Recall@100']:.4f}  p50 {np.median(ms):.1f} ms",
              flush=True)

    rc = config.recall
    lines = [
        f"# Recall on {Path(args.data).name} [{args.split}] ({len(qids)} queries)",
        "",
        f"Machine: {machine()}.",
        f"Command: `{command()}`",
        f"Candidates per route: {args.k}; RRF k={rc.rrf_k}; weighted fusion: min-max per route, dense weight "
        f"{rc.dense_weight}; vector search: {rc.ann} (exact below 50k vectors; torch on a GPU). Latency: one query at a time "
        f"(query encoding + search + fusion), {platform.python_implementation()} {platform.python_version()}.",
        "",
        "| stage | nDCG@10 | R@100 | R@1000 | p50 ms | p99 ms | QPS |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, m, ms in rows:
        lines.append(f"| {label} | {m['nDCG@10']:.4f} | {m['Recall@100']:.4f} | {m['Recall@1000']:.4f} | "
                     f"{np.median(ms):.1f} | {np.percentile(ms, 99):.1f} | {1000 / ms.mean():.1f} |")
    publish("\n".join(lines) + "\n", args.out)


if __name__ == "__main__":
    main()

"""The ranking funnel stage by stage on a BEIR split: BM25 -> + hybrid recall -> + coarse -> + fine -> + rerank.

For each stage: nDCG@10 and Recall@100 of the list the funnel returns if it stops after that stage
(`funnel.ranking.serving.pipeline.cascade_runs`), and the stage's p50/p95 latency per query; the last row is the
whole query. The cross-encoder/coarse fusion weight (``pipeline.fine_weight``: fine score = CE logit +
w x coarse score) is the one `funnel build` chose on ``train:select`` (``HOME/models/fusion.json``, the
share of the training queries the build held out of fitting), or, with ``--sweep-split S``, swept here
on S; so the ``--split`` figure (dev) comes from queries nothing was tuned on. SciFact's test
judgements are not used anywhere. When HOME holds ``build.json``, the build's plan vs actual minutes
per step is appended.

    .venv/bin/python benchmarks/funnel_stages.py --home HOME --data ../shared/data/scifact --split dev --profile cpu

HOME must hold the index and the trained models (`funnel build --data DIR`, or `funnel train ...`).
Writes ``benchmarks/results/funnel.md`` (or ``--out``).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from funnel.cli.main import set_runtime_env  # noqa: E402

set_runtime_env()  # as `funnel eval` / `funnel serve` run: OMP_WAIT_POLICY=PASSIVE among others

from benchmarks.report import command, machine, publish  # noqa: E402


def build_plan_table(path: Path) -> list[str]:
    """The build's plan vs actual minutes per step, from HOME/build.json (none: no lines)."""
    from funnel.ranking.evaluate import format_table

    try:
        build = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    rows = [{"step": r["step"], "planned min": "-" if r.get("planned_min") is None else f"{r['planned_min']:.1f}",
             "actual min": "-" if r.get("actual_min") is None else f"{r['actual_min']:.1f}",
             "recipe": r.get("recipe") or ""} for r in build.get("plan", [])]
    if not rows:
        return []
    return [f"## The build that made these models: plan vs actual (budget {build.get('budget_min')} min)", "",
            format_table(rows, ["step", "planned min", "actual min", "recipe"]), ""]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--home", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", default="dev")
    ap.add_argument("--profile", default="cpu", choices=["cpu", "gpu"])
    ap.add_argument("--sweep-split", default="",
                    help="sweep fine_weight on these judgements (e.g. train:select; never the reported split); "
                         "default: the build's choice in HOME/models/fusion.json")
    ap.add_argument("--set", action="append", default=[], dest="overrides", help="config override section.key=value")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "funnel.md"))
    args = ap.parse_args()

    from funnel.core.judgements import read_qrels, read_queries
    from funnel.core.config import load_config
    from funnel.ranking.evaluate import format_table
    from funnel.ranking.serving.fine import fusion_choice
    from funnel.ranking.serving.pipeline import Pipeline, evaluate_pipeline
    from funnel.ranking.training.fusion import best_weight, sweep_fine_weight

    config = load_config(None, [f'paths.home="{args.home}"'] + args.overrides)
    queries, qrels = read_queries(Path(args.data)), read_qrels(Path(args.data), args.split)
    t_start = time.time()
    notes = []

    bm25_pipe = Pipeline.from_config(replace(config, pipeline=replace(config.pipeline, recall="bm25")),
                                     args.profile, stages=[])
    bm25 = evaluate_pipeline(bm25_pipe, queries, qrels, progress=True)
    bm25_pipe.close()

    if args.sweep_split:
        if args.sweep_split == args.split:
            raise SystemExit(f"--sweep-split {args.sweep_split}: the reported split; sweep on other judgements")
        pipe0 = Pipeline.from_config(replace(config, pipeline=replace(config.pipeline, fine_weight=0.0)), args.profile)
        if {"coarse", "fine"} <= set(pipe0.stage_names):
            sweep, _ = sweep_fine_weight(pipe0, queries, read_qrels(Path(args.data), args.sweep_split), progress=True)
            config = replace(config, pipeline=replace(config.pipeline, fine_weight=best_weight(sweep)))
            notes.append(f"fine_weight swept on {args.sweep_split}: " +
                         ", ".join(f"{w:g} -> {v:.4f}" for w, v in sweep.items()) +
                         f"; used {config.pipeline.fine_weight:g}")
        pipe0.close()
    elif config.paths.fusion.exists():
        fusion = json.loads(config.paths.fusion.read_text(encoding="utf-8"))
        notes.append(f"fine_weight {fusion['fine_weight']:g}, chosen by `funnel build` on {fusion['split']} "
                     f"({fusion['queries']} queries): " + ", ".join(f"{w} -> {v:.4f}" for w, v in fusion["sweep"].items())
                     + f" (coarse alone {fusion['baseline']:.4f})" +
                     ("" if fusion.get("cpu_fine", True) else "; the fine stage did not beat the coarse ranker there, "
                      "so the cpu profile leaves it out"))
    else:
        notes.append(f"fine_weight {fusion_choice(config)[0]:g} (config; no fusion.json in the home)")

    pipe = Pipeline.from_config(config, args.profile)
    full = evaluate_pipeline(pipe, queries, qrels, progress=True)
    stages = pipe.stage_names
    fine_depth = next((s.depth for s, _ in pipe.stages if s.name == "fine"), None)
    pipe.close()

    label = {"bm25": "BM25 recall", "hybrid": f"+ hybrid recall (BM25 + dense, {config.recall.fusion} fusion)", "dense": "dense recall",
             "coarse": "+ coarse (LightGBM LambdaMART)",
             "fine": f"+ fine (cross-encoder, top {fine_depth})", "rerank": "+ rerank (dedup, MMR, rules)"}
    rows = [{"stage": "BM25 alone", **{k: bm25["stages"][0][k] for k in ("nDCG@10", "Recall@100", "p50_ms", "p95_ms")}}]
    for r in full["stages"]:
        rows.append({"stage": label.get(r["stage"], r["stage"]),
                     **{k: r[k] for k in ("nDCG@10", "Recall@100", "p50_ms", "p95_ms")}})
    rows.append({"stage": f"whole query ({args.profile} profile)", "nDCG@10": full["stages"][-1]["nDCG@10"],
                 "Recall@100": full["stages"][-1]["Recall@100"], **full["total"]})
    for r in rows:
        for k in ("p50_ms", "p95_ms"):
            r[k] = f"{r[k]:.1f}"
    table = format_table(rows, ["stage", "nDCG@10", "Recall@100", "p50_ms", "p95_ms"])
    pc = config.pipeline
    text = "\n".join([
        "# Ranking funnel, stage by stage",
        "",
        f"- machine: {machine()}",
        f"- command: `{command()}`",
        f"- data: {args.data} [{args.split}], {full['queries']} judged queries; stages: {' -> '.join(stages)}",
        f"- candidate counts: recall {pc.recall_k} -> coarse {pc.coarse_k} -> fine {fine_depth or '(none)'} -> final {pc.final_k} "
        f"(nDCG/Recall of each row: the funnel's list had it stopped after that stage, lists cut at 100)",
        f"- latency: milliseconds per query and stage (p50/p95 over the split, after 3 warm-up queries); "
        f"fine max length {pc.cpu_fine_max_length if args.profile == 'cpu' else pc.gpu_fine_max_length} tokens",
        *[f"- {n}" for n in notes],
        f"- wall time of this script: {time.time() - t_start:.0f} s",
        "",
        table,
        "",
        *build_plan_table(config.paths.build_log),
    ])
    publish(text, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`funnel build` to a budget: the plan printed before training against the minutes each step took.

Builds a BEIR folder (by default the synthetic corpus of `tests/data/make_hard_corpus.py`: 2,000 short
keyword training queries, ~100k graded judgement rows, queries with no BM25 hit) with the default
models under ``--budget-min``, then tabulates ``HOME/build.json``.

    .venv/bin/python benchmarks/build_plan.py --budget-min 8 [--data DIR] [--home HOME]

Writes ``benchmarks/results/build_plan.md`` (or ``--out``).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "data"))
from funnel.cli.main import set_runtime_env  # noqa: E402

set_runtime_env()

from benchmarks.report import command, machine, publish  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget-min", type=float, default=8.0)
    p.add_argument("--data", help="BEIR folder (default: a fresh synthetic hard corpus)")
    p.add_argument("--home", help="Funnel home to build into (default: a temporary folder)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "build_plan.md"))
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    from dataclasses import replace

    from funnel.cli.build import build
    from funnel.core.config import Config, PathsConfig

    work = Path(tempfile.mkdtemp(prefix="funnel-build-plan-"))
    data = Path(args.data) if args.data else work / "data"
    if not args.data:
        from make_hard_corpus import make_hard_corpus

        counts = make_hard_corpus(data)
        corpus = (f"synthetic hard corpus (`tests/data/make_hard_corpus.py`, defaults): {counts['docs']} documents, "
                  f"{counts['train']} train / {counts['dev']} dev keyword queries, {counts['rows']:,} graded "
                  f"judgement rows, {counts['no_hit']} queries with no BM25 hit")
    else:
        corpus = f"`{data}`"
    config = replace(Config(), paths=PathsConfig(home=args.home or str(work / "home")))
    t0 = time.perf_counter()
    build(config, data, device=args.device, progress=False, budget_min=args.budget_min)
    wall = time.perf_counter() - t0
    saved = json.loads(config.paths.build_log.read_text(encoding="utf-8"))
    lines = ["# `funnel build` to a budget: plan vs actual minutes", "",
             f"- command: `{command()}`", f"- machine: {machine()} (shared with other jobs)",
             f"- corpus: {corpus}", f"- models: the defaults (MiniLM dual encoder and cross-encoder); "
                                    f"budget {args.budget_min:g} min, device {args.device}",
             f"- wall time of the build: {wall / 60:.1f} min", "",
             "| step | planned min | actual min | recipe |", "|---|---:|---:|---|"]
    for row in saved["plan"]:
        cells = ["-" if row[k] is None else f"{row[k]:.1f}" for k in ("planned_min", "actual_min")]
        lines.append(f"| {row['step']} | {cells[0]} | {cells[1]} | {row['recipe']} |")
    lines += ["", "Planned minutes come from a few timed steps of each model (`build.probe_steps`); steps before "
                  "the plan (ingest, embedding) are measured, not planned. The time before the first training "
                  "step also holds the probes."]
    publish("\n".join(lines) + "\n", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Training to a time budget: how many steps each model of `funnel build` can afford on this machine,
and the recipe changes that make it fit. Feeds `funnel.cli.main.build`, which measures, prints the plan and
runs it.

The cost of a step is measured, not guessed: `probe` runs a trainer for a few real steps (after one
warm-up step) on the corpus itself. A model's minutes are then setup + steps x seconds per step +
epochs x its dev check. When the budget is short, the number of training pairs shrinks by sampling
first (a cap on positives per query per epoch, drawn by grade, so every query is still seen), then
epochs, then a cap on steps; the learning-rate schedule is sized to the steps that will run, and
``time_budget_min`` stays on as a safety net. Everything here but `probe` is pure arithmetic.
"""
from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from funnel.core.config import Config

CAPS = (16, 8, 4, 2, 1)  # positives per query per epoch tried in turn when the full recipe does not fit


@dataclass
class StepCost:
    """What one training run costs: measured seconds per step, setup and one dev check."""
    step_s: float  # seconds per optimiser step
    setup_s: float = 0.0  # mining negatives, loading documents, building the model
    dev_s: float = 0.0  # one dev check (per epoch)


@dataclass
class TrainPlan:
    """One model's planned recipe: steps, epochs, positives cap and the minutes it should take."""
    name: str
    steps: int  # planned optimiser steps
    full_steps: int  # what the recipe alone would run
    epochs: int
    max_positives: int = 0  # 0: every positive
    max_steps: int = 0  # 0: epochs x batches
    seconds: float = 0.0  # estimated
    full_seconds: float = 0.0
    budget_s: float = 0.0  # allotted (0: no budget)
    notes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        recipe = [f"{self.steps} steps of {self.full_steps}", f"{self.epochs} epoch{'s' * (self.epochs > 1)}"]
        if self.max_positives:
            recipe.append(f"<= {self.max_positives} positives/query/epoch")
        return ", ".join(recipe + self.notes)


def examples_at_cap(positives_per_query: list[int], cap: int) -> int:
    """Training pairs in one epoch when each query keeps at most `cap` positives (0: all)."""
    return sum(min(n, cap) if cap else n for n in positives_per_query)


def seconds(cost: StepCost, steps: int, epochs: int) -> float:
    return cost.setup_s + steps * cost.step_s + epochs * cost.dev_s


def fit(name: str, positives_per_query: list[int], batch: int, epochs: int, cost: StepCost,
        budget_s: float) -> TrainPlan:
    """The largest recipe within `budget_s` (0: no budget): all positives, then fewer positives per
    query (`CAPS`), then fewer epochs, then a cap on steps."""
    def steps_per_epoch(cap: int) -> int:
        return max(1, math.ceil(examples_at_cap(positives_per_query, cap) / batch))

    full = steps_per_epoch(0) * epochs
    plan = TrainPlan(name, full, full, epochs, seconds=seconds(cost, full, epochs),
                     full_seconds=seconds(cost, full, epochs), budget_s=budget_s)
    if not budget_s or plan.seconds <= budget_s:
        return plan
    most = max(positives_per_query, default=1)
    for cap in (c for c in CAPS if c < most):
        steps = steps_per_epoch(cap) * epochs
        if seconds(cost, steps, epochs) <= budget_s:
            plan.steps, plan.max_positives = steps, cap
            plan.seconds = seconds(cost, steps, epochs)
            return plan
    cap = 1 if most > 1 else 0
    per_epoch = steps_per_epoch(cap)
    plan.max_positives = cap
    affordable = max(0.0, budget_s - cost.setup_s)
    plan.epochs = max(1, min(epochs, int(affordable // (per_epoch * cost.step_s + cost.dev_s or 1e-9))))
    steps = per_epoch * plan.epochs
    if seconds(cost, steps, plan.epochs) > budget_s:  # not even one epoch: a cap on steps
        steps = max(1, min(steps, int((affordable - plan.epochs * cost.dev_s) // max(cost.step_s, 1e-9))))
        plan.max_steps = steps
    plan.steps = steps
    plan.seconds = seconds(cost, steps, plan.epochs)
    return plan


def allocate(wanted: dict[str, float], shares: dict[str, float], available: float) -> dict[str, float]:
    """Split `available` seconds between steps in proportion to `shares`, never giving a step more than
    it `wanted` (its full recipe); what one does not need goes to the others (water-filling)."""
    out: dict[str, float] = {}
    open_ = {k for k in wanted if wanted[k] > 0}
    left = max(available, 0.0)
    while open_:
        total = sum(shares.get(k, 0.0) or 1e-9 for k in open_)
        fair = {k: left * (shares.get(k, 0.0) or 1e-9) / total for k in open_}
        done = {k for k in open_ if wanted[k] <= fair[k]}
        if not done:
            out.update(fair)
            break
        for k in done:
            out[k] = wanted[k]
            left -= wanted[k]
        open_ -= done
    return {k: out.get(k, 0.0) for k in wanted}


def dev_sample(n_dev: int, cost: StepCost, epochs: int, budget_s: float, share: float = 0.3,
               least: int = 100) -> int:
    """Dev queries for the per-epoch checks so they take at most `share` of `budget_s` (0: all of them;
    never fewer than `least`): scales ``cost.dev_s`` to match and returns the sample size."""
    if not budget_s or not n_dev or epochs * cost.dev_s <= share * budget_s:
        return 0
    n = max(least, int(n_dev * share * budget_s / (epochs * cost.dev_s)))
    if n >= n_dev:
        return 0
    cost.dev_s *= n / n_dev
    return n


def apply(config: Config, section: str, plan: TrainPlan) -> Config:
    """`config` with `plan`'s recipe in ``section`` (``train_dense`` or ``fine``): epochs, positives cap,
    step cap and a time budget that leaves a little slack over the estimate."""
    sec = getattr(config, section)
    budget_min = round(max(plan.budget_s, plan.seconds) * 1.15 / 60, 2) if plan.budget_s else sec.time_budget_min
    new = replace(sec, epochs=plan.epochs, max_positives=plan.max_positives or sec.max_positives,
                  max_steps=plan.max_steps or sec.max_steps, time_budget_min=budget_min)
    return replace(config, **{section: new})


def _step_seconds(log_file: Path) -> float:
    """Seconds per step from a training log, leaving out the first (warm-up) step; gaps within an
    epoch when there are any (an epoch's end saves a checkpoint), else every gap."""
    rows = [json.loads(line) for line in log_file.read_text(encoding="utf-8").splitlines()]
    rows = [r for r in rows if "step" in r and "seconds" in r]
    gaps = [(b["seconds"] - a["seconds"], a["epoch"] == b["epoch"]) for a, b in zip(rows, rows[1:])]
    inner = [g for g, same in gaps if same]
    use = inner or [g for g, _ in gaps]
    return max(sum(use), 0.0) / len(use) if use else 0.0


def probe(kind: str, config: Config, data_dir: Path, *, split: str = "train", device: str = "auto",
          steps: int = 3) -> StepCost:
    """Run `kind` ("dense" or "fine") for 1 + `steps` real steps on the corpus, without dev checks, into
    a throwaway folder; returns its measured setup and seconds per step."""
    from funnel.ranking.training.train_cross import train_cross_encoder
    from funnel.ranking.training.train_dense import train_dual_encoder

    tmp = Path(tempfile.mkdtemp(prefix=f"funnel-probe-{kind}-"))
    try:
        log = tmp / "log.jsonl"
        t0 = time.perf_counter()
        if kind == "dense":
            cfg = replace(config, train_dense=replace(config.train_dense, max_steps=steps + 1, epochs=steps + 1,
                                                      time_budget_min=0.0))
            train_dual_encoder(cfg, data_dir, tmp / "model", split=split, dev_split="", log_file=log,
                               device=device, progress=False)
        else:
            cfg = replace(config, fine=replace(config.fine, max_steps=steps + 1, epochs=steps + 1, eval_depth=0,
                                               time_budget_min=0.0))
            train_cross_encoder(cfg, data_dir, tmp / "model", split=split, dev_split="", log_file=log,
                                device=device, progress=False)
        wall = time.perf_counter() - t0
        step_s = _step_seconds(log)
        return StepCost(step_s=step_s, setup_s=max(wall - (steps + 1) * step_s, 0.0))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


LGB_ROW_ROUND_S = 1e-7  # LightGBM lambdarank, 15 leaves, 2 threads: seconds per training row per round (rough)


def probe_coarse(config: Config, data_dir: Path, split: str = "train", n: int = 10) -> float:
    """Seconds per query of the coarse ranker's training lists (recall + features), timed on `n` judged
    queries with the serving recall stage."""
    import random

    from funnel.core.judgements import read_qrels, read_queries
    from funnel.index.pagerank import load_pagerank
    from funnel.ranking.serving.features import FeatureContext
    from funnel.ranking.serving.pipeline import Pipeline
    from funnel.ranking.training.train_coarse import candidate_lists

    queries = read_queries(data_dir)
    qrels = {q: j for q, j in read_qrels(data_dir, split).items() if q in queries}
    sample = sorted(random.Random(0).sample(sorted(qrels), min(n, len(qrels))))
    pipe = Pipeline.from_config(config, "cpu", stages=[])
    try:
        ctx = FeatureContext(pipe.resources["retriever"], pipe.resources["docs"], load_pagerank(config.paths.home))
        recall = pipe.stages[0][0]
        candidate_lists(recall, ctx, queries, {sample[0]: qrels[sample[0]]}, config.coarse.train_depth,
                        progress=False)  # warm-up
        t0 = time.perf_counter()
        candidate_lists(recall, ctx, queries, {q: qrels[q] for q in sample}, config.coarse.train_depth,
                        progress=False)
        return (time.perf_counter() - t0) / max(len(sample), 1)
    finally:
        pipe.close()


def coarse_seconds(config: Config, per_query_s: float, n_train: int, n_dev: int) -> float:
    """Estimated seconds of `train_coarse`: every list's recall and features, then LightGBM."""
    rows = (n_train + n_dev) * config.coarse.train_depth
    return (n_train + n_dev) * per_query_s + rows * config.coarse.n_estimators * LGB_ROW_ROUND_S

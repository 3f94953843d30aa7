"""ranking.training.budget: recipes fitted into a time budget (pure arithmetic), and the probe that
measures a real step on the tiny corpus."""
from __future__ import annotations

from dataclasses import replace

import pytest

from funnel.core.config import Config, FineConfig, PathsConfig, TrainDenseConfig
from funnel.ranking.training.budget import allocate, apply, dev_sample, examples_at_cap, fit, probe, StepCost

# the shape of the corpus in issue 19: 2,590 train queries, ~42 judged (~20 positive) documents each
POSITIVES = [20] * 2590


def test_no_budget_or_enough_budget_keeps_the_recipe():
    cost = StepCost(step_s=1.0, setup_s=10, dev_s=5)
    plan = fit("ce", [3, 1, 1], 2, 3, cost, 0)
    assert (plan.steps, plan.epochs, plan.max_positives, plan.max_steps) == (9, 3, 0, 0)
    assert plan.seconds == 10 + 9 + 15
    assert fit("ce", [3, 1, 1], 2, 3, cost, 1000).steps == 9


def test_a_short_budget_samples_positives_before_cutting_epochs():
    cost = StepCost(step_s=0.5, setup_s=20, dev_s=30)
    full = fit("ce", POSITIVES, 8, 3, cost, 0)
    assert full.steps == 3 * 6475 and full.seconds > 2.5 * 3600  # hours, where the budget allows minutes
    plan = fit("ce", POSITIVES, 8, 3, cost, 40 * 60)
    assert plan.seconds <= 40 * 60 and plan.epochs == 3 and plan.max_positives in (4, 2, 1)
    assert plan.steps == 3 * -(-examples_at_cap(POSITIVES, plan.max_positives) // 8)
    # tighter: one positive per query and fewer epochs, then a cap on steps
    tight = fit("ce", POSITIVES, 8, 3, cost, 5 * 60)
    assert (tight.max_positives, tight.epochs, tight.max_steps, tight.steps) == (1, 1, 0, 324)
    tighter = fit("ce", POSITIVES, 8, 3, cost, 2 * 60)
    assert tighter.max_steps == tighter.steps == (120 - 20 - 30) / 0.5 and tighter.seconds <= 2 * 60


def test_allocate_gives_unneeded_time_to_the_others():
    alloc = allocate({"dense": 100, "folds": 4000, "fine": 9000}, {"dense": 0.25, "folds": 0.25, "fine": 0.5}, 3000)
    assert alloc["dense"] == 100  # wanted less than its quarter
    assert alloc["folds"] == pytest.approx(2900 / 3) and alloc["fine"] == pytest.approx(2 * 2900 / 3)
    assert sum(allocate({"a": 10, "b": 20}, {"a": 1, "b": 1}, 1000).values()) == 30


def test_apply_writes_the_recipe_and_a_safety_budget():
    cost = StepCost(step_s=0.5, setup_s=20, dev_s=30)
    plan = fit("ce", POSITIVES, 8, 3, cost, 2 * 60)
    config = apply(Config(), "fine", plan)
    assert config.fine.epochs == plan.epochs and config.fine.max_positives == 1
    assert config.fine.max_steps == plan.max_steps == 140 and 2 <= config.fine.time_budget_min <= 2.5
    assert apply(Config(), "fine", fit("ce", [1], 8, 3, cost, 0)).fine == Config().fine  # nothing to change


def test_dev_checks_sample_their_queries_only_when_they_would_eat_the_budget():
    cost = StepCost(step_s=1.0, dev_s=300)  # one check of 1,000 dev queries: 5 min
    assert dev_sample(1000, cost, 3, 0) == 0 and dev_sample(1000, cost, 3, 3600) == 0  # no budget / affordable
    n = dev_sample(1000, cost, 3, 1200)  # three checks would take 15 of 20 minutes
    assert n == 400 and cost.dev_s == pytest.approx(120) and 3 * cost.dev_s <= 0.3 * 1200
    assert dev_sample(150, StepCost(step_s=1.0, dev_s=300), 3, 600) == 100  # never fewer than 100


@pytest.mark.parametrize("kind", ["dense", "fine"])
def test_probe_times_real_steps_and_leaves_nothing(kind, tiny_home_copy, tiny_dir, tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    config = Config(paths=PathsConfig(home=str(tiny_home_copy)),
                    fine=replace(FineConfig(), backbone="tiny", max_length=64, group_size=3, negatives_depth=10),
                    train_dense=replace(TrainDenseConfig(), backbone="tiny", towers="shared"))
    cost = probe(kind, config, tiny_dir, device="cpu", steps=2)
    assert cost.step_s > 0 and cost.setup_s >= 0
    assert not list(tmp_path.glob("funnel-probe-*"))  # the throwaway model is gone
    assert not (tiny_home_copy / "models").exists()


def test_a_step_stopped_by_its_budget_still_runs_its_dev_check(tiny_home, tiny_dir, tmp_path):
    import json

    from funnel.ranking.training.train_cross import train_cross_encoder

    config = Config(paths=PathsConfig(home=str(tiny_home)),
                    fine=replace(FineConfig(), backbone="tiny", max_length=64, group_size=3, negatives_depth=10,
                                 batch_queries=2, epochs=3, eval_depth=8, time_budget_min=1e-6))
    out = train_cross_encoder(config, tiny_dir, tmp_path / "ce", device="cpu", progress=False)
    training = json.loads((out / "funnel_meta.json").read_text())["training"]
    assert training["stopped_by_time_budget"] and training["steps"] == 1
    assert [r["epoch"] for r in training["dev"]] == [1] and "nDCG@10" in training["dev"][0]
    assert training["best_epoch"] == 1 and "beats_bm25" in training

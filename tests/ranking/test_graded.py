"""Graded judgements (0/1/2) used as grades: the cross-encoder's listwise targets, its groups, the
positives sampled per query, and LambdaMART's labels."""
from __future__ import annotations

import math
import random
from collections import Counter

import numpy as np
import pytest
import torch

from funnel.core.judgements import gain, sample_positives
from funnel.ranking.training.train_cross import listwise_loss, make_groups


def test_gain_is_the_ndcg_gain():
    assert [gain(g) for g in (-1, 0, 1, 2)] == [0.0, 0.0, 1.0, 3.0]


def test_graded_targets_keep_a_share_for_a_lower_grade():
    logits = torch.tensor([2.0, 1.0, 0.0])
    one_hot = listwise_loss(logits, 3, torch.tensor([[1.0, 0.0, 0.0]]))
    assert float(one_hot) == pytest.approx(float(listwise_loss(logits, 3)))  # binary: as before
    graded = listwise_loss(logits, 3, torch.tensor([[3.0, 1.0, 0.0]]))  # grade 2, grade 1, unjudged
    logp = torch.log_softmax(logits, 0)
    assert float(graded) == pytest.approx(float(-(0.75 * logp[0] + 0.25 * logp[1])), rel=1e-6)


def test_a_grade_2_positive_meets_the_grade_1_documents_as_negatives():
    qrels = {"q": {"a": 2, "b": 1, "c": 0}}
    groups = make_groups(qrels, {"q": ["x", "y"]}, 4, random.Random(0))
    by_pos = {ds[0]: ds for _, ds in groups}
    assert set(by_pos["a"][1:]) <= {"b", "c", "x", "y"} and len(set(by_pos["a"])) == 4
    assert "c" not in by_pos  # grade 0 is never a positive
    assert "a" not in by_pos["b"]  # never a higher grade as a negative


def test_positive_cap_draws_by_grade():
    judged = {f"g2-{i}": 2 for i in range(5)} | {f"g1-{i}": 1 for i in range(5)} | {"z": 0}
    rng = random.Random(0)
    counts = Counter(d[:2] for _ in range(2000) for d in sample_positives(judged, 2, rng))
    assert sum(counts.values()) == 4000 and "z" not in counts
    assert counts["g2"] / counts["g1"] > 2  # gain 3 vs 1
    assert sample_positives(judged, 0, rng) == sorted(d for d, g in judged.items() if g > 0)


def test_coarse_training_lists_carry_the_grade(tiny_home, tiny_dir):
    from funnel.core.config import Config, PathsConfig
    from funnel.core.judgements import read_qrels, read_queries
    from funnel.index.pagerank import load_pagerank
    from funnel.ranking.serving.features import FeatureContext
    from funnel.ranking.serving.pipeline import Pipeline
    from funnel.ranking.training.train_coarse import candidate_lists

    config = Config(paths=PathsConfig(home=str(tiny_home)))
    qrels = read_qrels(tiny_dir, "train")
    qid = sorted(qrels)[0]
    graded = {qid: {d: 2 for d in qrels[qid]}}
    pipe = Pipeline.from_config(config, "cpu", stages=[])
    try:
        res = pipe.resources
        ctx = FeatureContext(res["retriever"], res["docs"], load_pagerank(tiny_home))
        _, y, groups, _, _ = candidate_lists(pipe.stages[0][0], ctx, read_queries(tiny_dir), graded, 30,
                                             progress=False)
    finally:
        pipe.close()
    assert groups and int(y.max()) == 2 and set(np.unique(y)) <= {0, 2}
    assert not math.isnan(float(y.mean()))

import math

import numpy as np
import pytest

from funnel.ranking.rec.metrics import (coverage, evaluate_lists, hit_rate_at_k, intra_list_diversity, ndcg_at_k,
                                        novelty, recall_at_k)

TOPK = np.array([[3, 1, 2],    # target 1 at rank 2 (0-based 1)
                 [2, 4, 5],    # target 9 missing
                 [5, 3, 4]])   # target 5 at rank 1
TARGETS = np.array([1, 9, 5])


def test_ndcg_and_hit_by_hand():
    assert ndcg_at_k(TOPK, TARGETS, 3) == pytest.approx((1 / math.log2(3) + 0 + 1) / 3)
    assert hit_rate_at_k(TOPK, TARGETS, 3) == pytest.approx(2 / 3)
    assert hit_rate_at_k(TOPK, TARGETS, 1) == pytest.approx(1 / 3)
    assert recall_at_k(TOPK, TARGETS, 3) == hit_rate_at_k(TOPK, TARGETS, 3)


def test_coverage_diversity_novelty_by_hand():
    assert coverage(TOPK, n_items=10, k=3) == pytest.approx(5 / 10)
    genres = np.zeros((4, 3), bool)
    genres[1] = [1, 0, 0]
    genres[2] = [1, 1, 0]
    genres[3] = [0, 0, 1]
    # list [1, 2, 3]: d(1,2) = 1 - 1/2, d(1,3) = 1, d(2,3) = 1 -> mean 5/6
    assert intra_list_diversity(np.array([[1, 2, 3]]), genres, 3) == pytest.approx(5 / 6)
    counts = np.array([0, 3, 1, 0])  # total 4, n_items 3: p = (c + 1) / 7
    assert novelty(np.array([[1, 3]]), counts, 2) == pytest.approx((-math.log2(4 / 7) - math.log2(1 / 7)) / 2)


def test_evaluate_lists_flags_short_lists():
    genres = np.zeros((10, 2), bool)
    m = evaluate_lists(TOPK, TARGETS, genres, np.ones(10), k=3, recall_k=50)
    assert math.isnan(m["recall@50"]) and m["ndcg@3"] > 0

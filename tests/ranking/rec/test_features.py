import math

import numpy as np
import pytest
import scipy.sparse as sp

from funnel.ranking.rec.features import (ITEM_FEATURES, TRANSITION_FEATURES, FeatureContext, build_context,
                                         cooccurrence_counts, transition_counts, user_item_features)
from funnel.ranking.rec.split import known_sequences, split_view

DAY = 86400
NOW = 1_000 * DAY


@pytest.fixture
def ctx():
    genres = np.array([[0, 0], [1, 0], [0, 1], [1, 1]], bool)  # items 1: A, 2: B, 3: A+B
    log_items = np.array([1, 1, 2, 3, 3])
    log_ts = np.array([NOW - 40 * DAY, NOW - 10 * DAY, NOW - 5 * DAY, NOW - DAY, NOW + DAY])  # last is after now
    no_pairs = sp.csr_matrix((4, 4))
    return FeatureContext(np.bincount(log_items, minlength=4), log_items, log_ts, genres,
                          np.array([np.nan, 1990.0, np.nan, 2000.0]), no_pairs, no_pairs)


def test_features_by_hand(ctx):
    col = {name: j for j, name in enumerate(ITEM_FEATURES)}
    history, history_ts = np.array([1, 1, 2]), np.array([NOW - 3 * 3600, NOW - 2 * 3600, NOW - 3600])
    X = user_item_features(ctx, history, history_ts, NOW, np.array([1, 2, 3]))
    np.testing.assert_allclose(X[:, col["log_pop"]], np.log1p([2, 1, 2]))
    # 30 days before now: item 1 once (the -40 day one is too old), item 2 once, item 3 once (the later one is ignored)
    np.testing.assert_allclose(X[:, col["log_pop_recent"]], np.log1p([1, 1, 1]))
    # history genre shares: A 2/3, B 1/3; item 3 (A+B) averages them
    np.testing.assert_allclose(X[:, col["genre_affinity"]], [2 / 3, 1 / 3, 0.5], rtol=1e-6)
    year_now = math.floor(1970 + NOW / (365.2425 * DAY))
    assert X[0, col["item_age_years"]] == year_now - 1990 and np.isnan(X[1, col["item_age_years"]])
    assert X[0, col["user_activity"]] == 3
    assert X[0, col["log_hours_since_last"]] == pytest.approx(math.log1p(1.0))
    # no transitions known: P(c | anything) is the add-one popularity share, counts (2, 1, 2) -> (3, 2, 3) / 8
    np.testing.assert_allclose(X[:, col["markov_last"]], np.log([3 / 8, 2 / 8, 3 / 8]), rtol=1e-6)


def toy_transition_context() -> FeatureContext:
    """Three users' known sequences over items 1..3: 1 2 3 / 1 2 / 2 1."""
    seqs = [np.array([1, 2, 3]), np.array([1, 2]), np.array([2, 1])]
    flat = np.concatenate(seqs)
    return FeatureContext(np.bincount(flat, minlength=4), flat, np.arange(len(flat)), np.zeros((4, 1), bool),
                          np.full(4, np.nan), transition_counts(seqs, 3, 1), cooccurrence_counts(seqs, 3, 5))


def test_transition_counts_by_hand():
    ctx = toy_transition_context()
    # direct successors: 1->2 twice, 2->3 once, 2->1 once
    np.testing.assert_array_equal(ctx.transitions.toarray()[1:, 1:], [[0, 2, 0], [1, 0, 1], [0, 0, 0]])
    # within 5 steps, 1 / distance: as above plus 1->3 two steps apart (0.5)
    np.testing.assert_allclose(transition_counts([np.array([1, 2, 3]), np.array([1, 2]), np.array([2, 1])], 3, 5)
                               .toarray()[1:, 1:], [[0, 2, 0.5], [1, 0, 1], [0, 0, 0]])
    # co-occurrence: that in both orders (1 and 2: 2 + 1 = 3)
    np.testing.assert_allclose(ctx.cooccurrence.toarray()[1:, 1:], [[0, 3, 0.5], [3, 0, 1], [0.5, 1, 0]])


def test_transition_features_by_hand():
    ctx = toy_transition_context()
    col = {name: j for j, name in enumerate(ITEM_FEATURES)}
    X = user_item_features(ctx, np.array([2, 1]), np.array([0, 1]), 2, np.array([2, 3]))
    # prior p: counts (3, 3, 1) add-one -> (4, 4, 2) / 10. Last item 1 leaves twice (both to 2):
    # P(2|1) = (2 + 0.4) / 3 = 0.8, P(3|1) = (0 + 0.2) / 3; item 2 leaves twice (to 3, to 1):
    # P(2|2) = 0.4 / 3, P(3|2) = (1 + 0.2) / 3 = 0.4
    p1, p2 = np.array([0.8, 0.2 / 3]), np.array([0.4 / 3, 0.4])
    np.testing.assert_allclose(X[:, col["markov_last"]], np.log(p1), rtol=1e-6)
    # recency weights: last item 1, the one before 0.8
    np.testing.assert_allclose(X[:, col["markov_recent"]], np.log((p1 + 0.8 * p2) / 1.8), rtol=1e-6)
    # co-occurrence: row 1 sums to 3.5 (3 + 0.5), row 2 to 4 (3 + 1)
    c1, c2 = np.array([3.4 / 4.5, 0.7 / 4.5]), np.array([0.4 / 5, 1.2 / 5])
    np.testing.assert_allclose(X[:, col["cooc_recent"]], np.log((c1 + 0.8 * c2) / 1.8), rtol=1e-6)
    # an empty history: the columns say nothing
    empty = user_item_features(ctx, np.zeros(0, np.int64), np.zeros(0, np.int64), 2, np.array([2, 3]))
    assert (empty[:, [col[n] for n in TRANSITION_FEATURES]] == 0).all()


def test_context_counts_only_known_interactions(synthetic_ds):
    ctx = build_context(synthetic_ds, "dev")
    known, _ = known_sequences(synthetic_ds, "dev")
    assert ctx.item_counts.sum() == sum(len(k) for k in known) == len(ctx.log_items)
    assert (np.diff(ctx.log_ts) >= 0).all()


def test_fold_transitions_never_hold_the_rankers_targets(synthetic_ds):
    """The rankers' training lists (split "train") read transitions of the fold's known part only: no
    pair ending in one of the held-out targets is counted."""
    m = 3
    ctx = build_context(synthetic_ds, "train", m)
    known, _ = known_sequences(synthetic_ds, "train", m)
    assert ctx.transitions.sum() == sum(max(len(k) - 1, 0) for k in known)
    view = split_view(synthetic_ds, "train", m)
    first = view.histories[0]
    # the pair (last history item -> target) of a user's first held-out target is absent unless another
    # user's known part holds it
    a, b = first[-1], view.targets[0]
    others = sum(int(np.sum((k[:-1] == a) & (k[1:] == b))) for k in known)
    assert ctx.transitions[a, b] == others

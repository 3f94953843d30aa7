import math

import numpy as np
import pytest

from funnel.ranking.rec.features import ITEM_FEATURES, FeatureContext, build_context, user_item_features
from funnel.ranking.rec.split import known_sequences

DAY = 86400
NOW = 1_000 * DAY


@pytest.fixture
def ctx():
    genres = np.array([[0, 0], [1, 0], [0, 1], [1, 1]], bool)  # items 1: A, 2: B, 3: A+B
    log_items = np.array([1, 1, 2, 3, 3])
    log_ts = np.array([NOW - 40 * DAY, NOW - 10 * DAY, NOW - 5 * DAY, NOW - DAY, NOW + DAY])  # last is after now
    return FeatureContext(np.bincount(log_items, minlength=4), log_items, log_ts, genres,
                          np.array([np.nan, 1990.0, np.nan, 2000.0]))


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


def test_context_counts_only_known_interactions(synthetic_ds):
    ctx = build_context(synthetic_ds, "dev")
    known, _ = known_sequences(synthetic_ds, "dev")
    assert ctx.item_counts.sum() == sum(len(k) for k in known) == len(ctx.log_items)
    assert (np.diff(ctx.log_ts) >= 0).all()

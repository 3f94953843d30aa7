import numpy as np
import pytest

from funnel.ranking.rec.baselines import EASE, ItemKNN, Popularity, interaction_matrix, select_on_dev
from funnel.ranking.rec.split import fit_sequences, split_view

HIST = [np.array([1, 2]), np.array([1, 2]), np.array([3]), np.array([2, 3])]


def test_shapes(synthetic_ds):
    fit, _ = fit_sequences(synthetic_ds, "dev")
    for model in (Popularity(), ItemKNN(neighbors=10), EASE(10.0)):
        s = model.fit(fit, synthetic_ds.n_items).score(fit[:5])
        assert s.shape == (5, synthetic_ds.n_items + 1)


def test_itemknn_known_answer():
    knn = ItemKNN(neighbors=10, shrink=0.0).fit(HIST, 3)
    # items 1 and 2 co-occur twice; n_1 = 2, n_2 = 3: cosine = 2 / sqrt(6)
    assert knn.sim[1, 2] == pytest.approx(2 / np.sqrt(6), rel=1e-6)
    assert knn.sim[1, 3] == 0.0
    s = knn.score([np.array([1])])[0]
    assert s[2] > 0 and s[3] == 0.0


def test_ease_matches_per_item_ridge_regression():
    l2 = 0.5
    ease = EASE(l2).fit(HIST, 3)
    x = interaction_matrix(HIST, 3).toarray()[:, 1:].astype(np.float64)  # drop the padding column
    for j in range(3):
        others = [i for i in range(3) if i != j]
        a = x[:, others]
        w = np.linalg.solve(a.T @ a + l2 * np.eye(2), a.T @ x[:, j])  # ridge of item j on the others
        assert ease.b[1:, 1:][others, j] == pytest.approx(w, rel=1e-4, abs=1e-5)
        assert ease.b[j + 1, j + 1] == 0.0


def test_popularity_counts():
    s = Popularity().fit(HIST, 3).score([np.array([1])])
    assert s.tolist() == [[0.0, 2.0, 3.0, 2.0]]


def test_select_on_dev(synthetic_ds):
    fit, _ = fit_sequences(synthetic_ds, "dev")
    model, best, table = select_on_dev(EASE, [1.0, 100.0], fit, synthetic_ds.n_items, split_view(synthetic_ds, "dev"))
    assert best in table and model.l2 == best


def test_npy_round_trip(tmp_path):
    for model, params in ((EASE(0.5), {"l2": 0.5}), (ItemKNN(10, 0.0), {"neighbors": 10, "shrink": 0.0}),
                          (Popularity(), {})):
        model.fit(HIST, 3)
        model.save_npy(tmp_path / f"{model.name}.npy")
        loaded = type(model).load_npy(tmp_path / f"{model.name}.npy", **params)
        np.testing.assert_array_equal(loaded.score(HIST), model.score(HIST))

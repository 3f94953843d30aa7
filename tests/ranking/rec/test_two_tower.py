import numpy as np
import pytest
import torch

from funnel.ranking.rec.baselines import Popularity
from funnel.ranking.rec.metrics import recall_at_k
from funnel.ranking.rec.split import fit_sequences, rank_full, split_view
from funnel.ranking.rec.two_tower import TwoTower, age_bucket, prefix_examples

SMALL = dict(dim=32, max_len=10, batch_size=64, lr=5e-3, max_epochs=15, eval_k=10, patience=3)


@pytest.fixture(scope="module")
def trained(synthetic_ds):
    torch.set_num_threads(1)
    fit, _ = fit_sequences(synthetic_ds, "dev")
    model = TwoTower.from_dataset(synthetic_ds, device="cpu", **SMALL)
    model.fit(fit, split_view(synthetic_ds, "dev"))
    return model


def test_prefix_examples_and_age_buckets():
    users, hist, targets = prefix_examples([np.array([5, 6, 7])], np.array([3]), max_len=2)
    assert users.tolist() == [3, 3] and hist.tolist() == [[0, 5], [5, 6]] and targets.tolist() == [6, 7]
    assert age_bucket(np.array([np.nan, 10, 18, 30, 60])).tolist() == [0, 1, 2, 3, 7]


def test_two_tower_beats_popularity(synthetic_ds, trained):
    ds = synthetic_ds
    view = split_view(ds, "test")
    fit, _ = fit_sequences(ds, "test")
    pop = Popularity().fit(fit, ds.n_items)
    rec = lambda s: recall_at_k(rank_full(s, view.histories, 10), view.targets, 10)
    assert rec(trained.score(view.histories, view.users)) > rec(pop.score(view.histories)) + 0.2


def test_save_load_round_trip(synthetic_ds, trained, tmp_path):
    view = split_view(synthetic_ds, "dev")
    trained.save(tmp_path / "tt")
    loaded = TwoTower.load(tmp_path / "tt", device="cpu")
    np.testing.assert_allclose(loaded.score(view.histories, view.users), trained.score(view.histories, view.users),
                               rtol=1e-5, atol=1e-5)


def test_title_embeddings_are_used_and_checked(synthetic_ds, tmp_path):
    titles = np.random.default_rng(0).normal(size=(synthetic_ds.n_items + 1, 8)).astype(np.float32)
    model = TwoTower.from_dataset(synthetic_ds, title_embeddings=titles, device="cpu", **{**SMALL, "max_epochs": 1})
    fit, _ = fit_sequences(synthetic_ds, "dev")
    model.fit(fit)
    assert model.config.text_dim == 8 and model.item_vectors().shape == (synthetic_ds.n_items + 1, 32)
    model.save(tmp_path / "tt")
    np.testing.assert_allclose(TwoTower.load(tmp_path / "tt", device="cpu").item_vectors(), model.item_vectors(),
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="n_items \\+ 1"):
        TwoTower.from_dataset(synthetic_ds, title_embeddings=titles[:5])

import numpy as np
import pytest
import torch

from funnel.ranking.rec.baselines import Popularity
from funnel.ranking.rec.metrics import ndcg_at_k
from funnel.ranking.rec.sasrec import SASRec, SASRecConfig, training_windows
from funnel.ranking.rec.split import fit_sequences, rank_full, split_view


def small_config(n_items: int, **kw) -> SASRecConfig:
    base = dict(n_items=n_items, max_len=20, dim=32, n_layers=1, dropout=0.1, lr=5e-3, batch_size=16,
                max_epochs=40, eval_every=5, patience=3)
    return SASRecConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def trained(synthetic_ds):
    torch.set_num_threads(1)
    fit, _ = fit_sequences(synthetic_ds, "dev")
    model = SASRec(small_config(synthetic_ds.n_items), device="cpu")
    model.fit(fit, split_view(synthetic_ds, "dev"))
    return model


def test_training_windows_cover_long_sequences():
    x, y = training_windows([np.arange(1, 8)], max_len=3)
    # windows from the end: [4,5,6]->[5,6,7], [1,2,3]->[2,3,4]; shorter ones left-padded
    assert x.tolist() == [[4, 5, 6], [1, 2, 3]] and y.tolist() == [[5, 6, 7], [2, 3, 4]]


def test_sasrec_learns_the_sequence_and_beats_popularity(synthetic_ds, trained):
    ds = synthetic_ds
    view = split_view(ds, "test")
    fit, _ = fit_sequences(ds, "test")
    pop = Popularity().fit(fit, ds.n_items)
    ndcg = lambda s: ndcg_at_k(rank_full(s, view.histories, 10), view.targets, 10)
    assert ndcg(trained.score(view.histories)) > ndcg(pop.score(view.histories)) + 0.2
    assert trained.report.best_epoch > 0 and trained.report.history


def test_score_candidates_agrees_with_full_scores(synthetic_ds, trained):
    view = split_view(synthetic_ds, "dev")
    full = trained.score(view.histories[:4])
    cands = np.array([[1, 5, 9], [2, 3, 4], [7, 8, 1], [10, 11, 12]])
    np.testing.assert_allclose(trained.score_candidates(view.histories[:4], cands),
                               np.take_along_axis(full, cands, 1), rtol=1e-4, atol=1e-4)


def test_save_load_round_trip(synthetic_ds, trained, tmp_path):
    view = split_view(synthetic_ds, "dev")
    trained.save(tmp_path / "sasrec")
    loaded = SASRec.load(tmp_path / "sasrec", device="cpu")
    np.testing.assert_allclose(loaded.score(view.histories), trained.score(view.histories), rtol=1e-5, atol=1e-5)
    assert loaded.config == trained.config
    with pytest.raises(ValueError, match="expected 'two_tower'"):
        from funnel.ranking.rec.two_tower import TwoTower
        TwoTower.load(tmp_path / "sasrec")


def test_refit_for_fixed_epochs(synthetic_ds):
    fit, _ = fit_sequences(synthetic_ds, "train")
    model = SASRec(small_config(synthetic_ds.n_items), device="cpu")
    rep = model.fit(fit, max_epochs=2)
    assert rep.epochs_run == 2 and rep.best_epoch == 2

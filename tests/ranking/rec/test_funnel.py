"""The whole funnel on the synthetic log, fitted by the one recipe (`build.fit_funnel`): routes ->
coarse LightGBM -> SASRec + fine LightGBM -> rerank."""
import numpy as np
import pytest
import torch

from funnel.ranking.rec.build import FittedFunnel, FunnelRecipe, fit_funnel
from funnel.ranking.rec.coarse import LambdaMartRanker
from funnel.ranking.rec.features import FINE_FEATURES, ITEM_FEATURES
from funnel.ranking.rec.funnel import Batch, FunnelConfig, evaluate_funnel, fuse_rrf, recommend
from funnel.ranking.rec.rerank import RerankConfig
from funnel.ranking.rec.split import split_view

RECIPE = FunnelRecipe(
    train_targets=2, threads=1, device="cpu",
    sasrec=dict(max_len=20, dim=16, n_layers=1, dropout=0.1, lr=5e-3, batch_size=16, max_epochs=10, eval_every=2),
    two_tower=dict(dim=16, max_len=10, batch_size=64, lr=5e-3, eval_k=10, max_epochs=5),
    funnel=FunnelConfig(recall_k=20, coarse_k=10, rerank=RerankConfig(k=5)))


@pytest.fixture(scope="module")
def fitted(synthetic_ds):
    torch.set_num_threads(1)
    return fit_funnel(synthetic_ds, RECIPE)


@pytest.fixture(scope="module")
def funnel(synthetic_ds, fitted):
    return fitted.funnel(synthetic_ds, "test")


def test_rrf_by_hand():
    ranks = {"a": np.array([[0, 1]]), "b": np.array([[1, 0]])}
    fused = fuse_rrf(ranks, {"b": 2.0}, k=1.0)
    assert fused.tolist() == [[1 / 2 + 2 / 3, 1 / 3 + 2 / 2]]


def test_feature_columns(synthetic_ds, funnel):
    names = funnel.coarse.features
    assert names[-len(ITEM_FEATURES):] == ITEM_FEATURES and "route_two_tower" in names and "rank_ease" in names
    assert funnel.fine_ranker.features == names + FINE_FEATURES


def test_recommend_shapes_and_rules(synthetic_ds, funnel):
    view = split_view(synthetic_ds, "test")
    out = recommend(funnel, Batch.from_view(view, range(8)), trace=True)
    assert out.stages["recall"].items.shape == (8, 20)
    assert out.stages["coarse"].items.shape == (8, 10) and out.stages["fine"].items.shape == (8, 10)
    final = out.stages["rerank"].items
    assert final.shape == (8, 5) and set(out.ms) == {"recall", "coarse", "fine", "rerank"}
    for u in range(8):
        assert not set(final[u]) & set(view.histories[u]), "a seen item came back"
        assert len(set(final[u])) == 5
        assert set(final[u]) <= set(out.stages["fine"].items[u])
    assert len(out.traces) == 8 and "mmr" in out.traces[0]


def test_evaluate_funnel(synthetic_ds, funnel):
    res = evaluate_funnel(funnel, split_view(synthetic_ds, "test"), batch_size=1, recall_k=10)
    assert list(res) == ["recall", "coarse", "fine", "rerank"]
    for m in res.values():
        assert 0.0 <= m["ndcg@10"] <= 1.0 and m["p95_ms"] >= m["p50_ms"] > 0
    assert res["recall"]["recall@20"] >= res["recall"]["recall@10"]
    # the synthetic log is predictable from the last item: the funnel must do far better than chance
    assert res["rerank"]["hr@10"] > 0.3


def test_choices_are_recorded(fitted):
    ch = fitted.choices
    assert ch["ease_l2"]["chosen"] in RECIPE.ease_grid and ch["route_weights"]["chosen"] == dict(fitted.config.route_weights)
    assert fitted.config.rerank.k == 5 and set(fitted.seconds) >= {"two_tower", "sasrec", "coarse", "fine"}


def test_fitted_funnel_save_load(synthetic_ds, fitted, funnel, tmp_path):
    fitted.save(tmp_path / "funnel")
    loaded = FittedFunnel.load(tmp_path / "funnel", device="cpu")
    batch = Batch.from_view(split_view(synthetic_ds, "test"), range(10))
    a = recommend(funnel, batch).stages
    b = recommend(loaded.funnel(synthetic_ds, "test"), batch).stages
    for stage in a:
        np.testing.assert_array_equal(a[stage].items, b[stage].items)
    assert loaded.config == fitted.config
    with pytest.raises(FileNotFoundError, match="no fitted funnel"):
        FittedFunnel.load(tmp_path / "missing")


def test_coarse_save_load(synthetic_ds, funnel, tmp_path):
    funnel.coarse.save(tmp_path / "coarse")
    loaded = LambdaMartRanker.load(tmp_path / "coarse")
    X = np.random.default_rng(0).normal(size=(3, 7, len(loaded.features))).astype(np.float32)
    np.testing.assert_allclose(loaded.predict(X), funnel.coarse.predict(X), rtol=1e-6)
    assert loaded.features == funnel.coarse.features
    with pytest.raises(FileNotFoundError, match="no LambdaMART ranker"):
        LambdaMartRanker.load(tmp_path / "missing")


def test_fine_feature_matrix_by_hand():
    from funnel.ranking.rec.features import fine_feature_matrix

    X = fine_feature_matrix(np.zeros((1, 3, 2)), np.array([[3.0, 1.0, 2.0]]))
    assert X.shape == (1, 3, 2 + len(FINE_FEATURES))
    np.testing.assert_allclose(X[0, :, 2], [3, 1, 2])
    np.testing.assert_allclose(X[0, :, 3], [np.sqrt(1.5), -np.sqrt(1.5), 0.0], rtol=1e-5)
    assert X[0, :, 4].tolist() == [0, 2, 1]


def test_recommend_for_known_users(synthetic_ds, fitted):
    ids, out = fitted.recommend_for(synthetic_ds, ["1", "7"], trace=True)
    assert len(ids) == 2 and all(len(row) == 5 for row in ids)
    seen = {synthetic_ds.item_ids[i] for i in synthetic_ds.sequences[0]}
    assert not seen & set(ids[0]) and len(out.traces) == 2
    with pytest.raises(KeyError, match="unknown user"):
        fitted.recommend_for(synthetic_ds, ["nobody"])

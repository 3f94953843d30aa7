"""The whole funnel on the synthetic log: routes -> coarse LightGBM -> SASRec -> rerank."""
import numpy as np
import pytest
import torch

from funnel.ranking.rec.baselines import EASE, Popularity
from funnel.ranking.rec.coarse import LambdaMartConfig, LambdaMartRanker
from funnel.ranking.rec.features import FINE_FEATURES, ITEM_FEATURES, build_context, feature_names, fine_feature_names
from funnel.ranking.rec.funnel import (Batch, Funnel, FunnelConfig, coarse_examples, evaluate_funnel, fine_examples,
                                       fuse_rrf, recommend)
from funnel.ranking.rec.rerank import RerankConfig
from funnel.ranking.rec.sasrec import SASRec, SASRecConfig
from funnel.ranking.rec.split import fit_sequences, split_view
from funnel.ranking.rec.two_tower import TwoTower

CFG = FunnelConfig(recall_k=20, coarse_k=10, rerank=RerankConfig(k=5, mmr_lambda=0.9))


def routes_for(ds, seqs, tt):
    ease, pop = EASE(10.0).fit(seqs, ds.n_items), Popularity().fit(seqs, ds.n_items)
    return {"two_tower": lambda h, u: tt.score(h, u), "ease": lambda h, u: ease.score(h),
            "popularity": lambda h, u: pop.score(h)}


@pytest.fixture(scope="module")
def funnel(synthetic_ds):
    torch.set_num_threads(1)
    ds = synthetic_ds
    fit, _ = fit_sequences(ds, "dev")
    fold, _ = fit_sequences(ds, "train")
    tt_kw = dict(dim=16, max_len=10, batch_size=64, lr=5e-3, eval_k=10)
    tt = TwoTower.from_dataset(ds, device="cpu", **tt_kw)
    tt.fit(fit, max_epochs=5)
    tt_fold = TwoTower.from_dataset(ds, device="cpu", **tt_kw)
    tt_fold.fit(fold, max_epochs=5)
    routes, routes_fold = routes_for(ds, fit, tt), routes_for(ds, fold, tt_fold)
    train_view, dev = split_view(ds, "train"), split_view(ds, "dev")
    rec, X, y = coarse_examples(routes_fold, build_context(ds, "train"), train_view, CFG)
    rec_dev, X_dev, y_dev = coarse_examples(routes, build_context(ds, "dev"), dev, CFG)
    lm = LambdaMartConfig(n_estimators=20, min_data_in_leaf=5, num_threads=1, top_k=10)
    coarse = LambdaMartRanker.fit(X, y, X_dev, y_dev, feature_names(list(routes)), lm)
    sas_cfg = SASRecConfig(n_items=ds.n_items, max_len=20, dim=16, n_layers=1, dropout=0.1, lr=5e-3, batch_size=16)
    sas, sas_fold = SASRec(sas_cfg, device="cpu"), SASRec(sas_cfg, device="cpu")
    sas.fit(fit, max_epochs=10)
    sas_fold.fit(fold, max_epochs=10)
    Xf, yf = fine_examples([sas_fold], coarse, train_view, rec, X, CFG)
    Xf_dev, yf_dev = fine_examples([sas], coarse, dev, rec_dev, X_dev, CFG)
    fine_ranker = LambdaMartRanker.fit(Xf, yf, Xf_dev, yf_dev, fine_feature_names(list(routes)), lm)
    return Funnel(routes, build_context(ds, "test"), coarse, [sas], fine_ranker, CFG)


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

"""funnel.ranking.serving.coarse and funnel.ranking.training.train_coarse: LambdaMART trained on the tiny corpus, saved as text + JSON,
reloaded to the same scores, and used as a stage; on SciFact (slow) it must beat BM25 on dev."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from funnel.core.config import CoarseConfig, Config, PathsConfig
from funnel.core.errors import InputError
from funnel.core.store import DocumentStore
from funnel.index.searcher import Bm25Retriever
from funnel.ranking.serving.coarse import CoarseModel, CoarseRanker
from funnel.ranking.serving.features import FEATURES, DocCache, FeatureContext
from funnel.ranking.serving.stages import Candidates, Request
from funnel.ranking.training.train_coarse import train_coarse

SMALL = replace(CoarseConfig(), train_depth=30, n_estimators=40, early_stopping=20, min_child_samples=5)


@pytest.fixture(scope="module")
def coarse_dir(tiny_home, tiny_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("coarse")
    config = Config(paths=PathsConfig(home=str(tiny_home)), coarse=SMALL)
    train_coarse(config, tiny_dir, out, log_file=out / "log.jsonl", progress=False)
    return out


def test_model_files_are_text_and_json(coarse_dir):
    assert sorted(p.name for p in coarse_dir.iterdir()) == ["importance.json", "log.jsonl", "meta.json", "model.txt"]
    assert (coarse_dir / "model.txt").read_text().startswith("tree")  # LightGBM's text format, not pickle
    meta = json.loads((coarse_dir / "meta.json").read_text())
    assert meta["format_version"] == 1 and meta["features"] == list(FEATURES)
    assert set(meta["importance"]["gain"]) == set(FEATURES) and meta["importance"]["split"]["dense"] == 0  # no dense
    assert 1 <= meta["best_iteration"] <= SMALL.n_estimators
    for stage in ("recall", "coarse"):
        assert 0 <= meta["dev"][stage]["nDCG@10"] <= 1
    log = [json.loads(line) for line in (coarse_dir / "log.jsonl").read_text().splitlines()]
    assert "summary" in log[-1] and all("dev_ndcg@10" in row for row in log[:-1])


def test_reloaded_model_scores_like_the_booster(coarse_dir):
    model = CoarseModel.load(coarse_dir)
    X = np.random.default_rng(0).random((25, len(FEATURES))).astype(np.float32)
    want = model.booster.predict(X, num_iteration=model.meta["best_iteration"])
    np.testing.assert_allclose(model.predict(X), want, rtol=1e-6)
    assert model.predict(np.zeros((0, len(FEATURES)), np.float32)).shape == (0,)


def test_coarse_stage_orders_by_model_score(coarse_dir, tiny_home):
    retriever = Bm25Retriever.open(tiny_home / "index")
    with DocumentStore(tiny_home / "store.sqlite", readonly=True) as store:
        ctx = FeatureContext(retriever, DocCache(store, retriever.analyzer))
        stage = CoarseRanker(CoarseModel.load(coarse_dir), ctx)
        hits = retriever.search("breast cancer environmental factors", 30)
        cands = Candidates(hits.ords, hits.doc_ids, hits.scores.astype(np.float32))
        out = stage.rank(Request(query="breast cancer environmental factors"), cands, 5)
    assert len(out) == 5 and np.all(np.diff(out.scores) <= 0)
    assert out.trace[-1].stage == "coarse" and out.trace[-1].doc_ids == out.doc_ids
    assert set(FEATURES) <= set(out.features)  # features travel with the candidates for --explain
    X = np.stack([out.features[f] for f in FEATURES], axis=1)
    np.testing.assert_allclose(stage.model.predict(X), out.scores, rtol=1e-6)


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="funnel train coarse"):
        CoarseModel.load(tmp_path)


@pytest.mark.slow
def test_coarse_beats_bm25_on_scifact_dev(scifact_dir, tmp_path):
    """Quality regression: LambdaMART over the cheap features, BM25 candidates, SciFact dev."""
    from funnel.crawler.beir import ingest_beir
    from funnel.index.analyze import Analyzer
    from funnel.index.builder import build_index

    with DocumentStore(tmp_path / "store.sqlite") as store:
        ingest_beir(scifact_dir, store)
        build_index(store, tmp_path / "index", Analyzer(), progress=False)
    config = Config(paths=PathsConfig(home=str(tmp_path)), coarse=replace(CoarseConfig(), n_estimators=150))
    meta = json.loads((train_coarse(config, scifact_dir, progress=False) / "meta.json").read_text())
    assert meta["dev"]["recall"]["nDCG@10"] == pytest.approx(0.6998, abs=0.005)  # BM25
    assert meta["dev"]["coarse"]["nDCG@10"] >= 0.74

"""The dashboard's numbers (dashboard/inspect_funnel.py) against the models and stages they explain."""
from __future__ import annotations

import numpy as np
import pytest

from funnel.dashboard import inspect_funnel as fi


def test_movement_labels():
    assert fi.movement(None, 1, True) == ""
    assert fi.movement(None, 2, False) == "new"
    assert fi.movement(5, 2, False) == "↑3"
    assert fi.movement(1, 4, False) == "↓3"
    assert fi.movement(3, 3, False) == "="


def test_every_stage_is_loaded_and_traced(full_service):
    assert full_service.stage_names()[1:] == ["coarse", "fine", "rerank"]  # after the recall stage
    assert full_service.funnel_loaded


def test_stage_frames_follow_the_trace(full_service):
    result = full_service.search("cancer cells", k=5, explain=True, explain_depth=20)
    frames = fi.stage_frames(full_service, result)
    trace = result.candidates.trace
    assert [f[0] for f in frames] == [t.stage for t in trace]
    for (stage, ms, n, frame), t in zip(frames, trace):
        assert n == len(t.doc_ids) and ms == pytest.approx(t.ms)
        assert list(frame["doc_id"]) == t.doc_ids[:20]
    prev = {d: i + 1 for i, d in enumerate(trace[1].doc_ids)}
    for _, row in frames[2][3].iterrows():  # fine stage rows: movement against coarse
        assert row["move"] == fi.movement(prev.get(row["doc_id"]), row["rank"], False)
    paths = fi.rank_paths(result)
    assert set(paths["doc_id"]) == {h.doc_id for h in result.hits}


def test_lightgbm_contributions_add_up_to_the_coarse_score(full_service):
    result = full_service.search("cancer cells", k=5, explain=True)
    coarse = next(t for t in result.candidates.trace if t.stage == "coarse")
    for h in result.hits:
        contrib = fi.coarse_contributions(full_service, result, h.doc_id)
        assert contrib is not None and "(bias)" in set(contrib["feature"])
        score = float(coarse.scores[coarse.doc_ids.index(h.doc_id)])
        assert contrib["contribution"].sum() == pytest.approx(score, abs=1e-4)


def test_cross_encoder_attention_belongs_to_the_scored_pair(full_service):
    result = full_service.search("cancer cells", k=3, explain=True)
    fine = next(t for t in result.candidates.trace if t.stage == "fine")
    for h in result.hits:
        att = fi.cross_encoder_attention(full_service, "cpu", "cancer cells", h.doc_id)
        assert att is not None
        ce = float(result.candidates.features["ce"][result.candidates.doc_ids.index(h.doc_id)])
        assert att.logit == pytest.approx(ce, abs=1e-4)
        assert att.query_to_doc.shape == (len(att.query_tokens), len(att.doc_tokens))
        assert np.isclose(att.cls_weights.sum(), 1.0, atol=1e-4)  # a softmax row
        assert att.query_tokens == ["cancer", "cells"]
    assert fine.doc_ids


def test_bm25_only_profile_has_no_contributions(full_config):
    from funnel.api.service import SearchService

    svc = SearchService.open(full_config, use_funnel=False, warm=False)
    result = svc.search("cancer", k=3, explain=True)
    assert fi.coarse_contributions(svc, result, result.hits[0].doc_id) is None
    assert fi.cross_encoder_attention(svc, "cpu", "cancer", result.hits[0].doc_id) is None
    svc.close()


def test_pagerank_and_link_neighbourhood(full_service):
    top = fi.pagerank_top(full_service)
    assert list(top["pagerank"]) == [0.5, 0.3, 0.2]
    hub = top["doc_id"].iloc[0]
    graph = fi.LinkGraph(full_service.store)
    assert graph.n_links == 3
    nb = graph.neighbourhood(full_service.store, hub)
    assert sorted(nb[nb["direction"] == "out"]["page"]) == sorted(top["doc_id"].iloc[1:])
    assert list(nb[nb["direction"] == "in"]["anchor"]) == [full_service.store.get(top["doc_id"].iloc[1]).title]


def test_stage_metrics_match_a_direct_evaluation(full_service):
    from funnel.ranking.evaluate import evaluate

    assert ("tiny", "dev") in fi.judged_sets(full_service.config.paths.store)
    metrics, lat = fi.stage_metrics(full_service, "tiny", "dev", "cpu", max_queries=10)
    assert list(metrics["stage"]) == full_service.stage_names()
    qrels = full_service.store.qrels("tiny", "dev")
    texts = full_service.store.queries("tiny")
    qids = sorted(q for q in qrels if q in texts)[:10]
    run = {q: {d: -i for i, d in enumerate(full_service.rank(texts[q], 10, "cpu").doc_ids)} for q in qids}
    final = evaluate(run, {q: qrels[q] for q in qids}, ("nDCG@10",))["nDCG@10"]
    assert metrics["nDCG@10"].iloc[-1] == pytest.approx(final, abs=1e-9)
    assert list(lat["stage"]) == full_service.stage_names() + ["total"]
    assert (lat["p95 ms"] >= lat["p50 ms"]).all()


def test_cross_encoder_attention_by_layer_and_head(full_service):
    doc_id = full_service.search("cancer cells", k=1).hits[0].doc_id

    def att(**kw):
        return fi.cross_encoder_attention(full_service, "cpu", "cancer cells", doc_id, **kw)

    mean = att(layer=0)
    assert mean.layer == 0 and mean.head is None and mean.n_layers >= 1 and mean.n_heads >= 2
    heads = [att(layer=0, head=h) for h in range(mean.n_heads)]
    assert [h.head for h in heads] == list(range(mean.n_heads))
    np.testing.assert_allclose(np.mean([h.query_to_doc for h in heads], axis=0), mean.query_to_doc, atol=1e-5)
    assert all(np.isclose(h.cls_weights.sum(), 1.0, atol=1e-4) for h in heads)
    assert att().layer == mean.n_layers - 1  # the last layer by default

"""funnel.ranking.serving.rerank: MMR, near-duplicates, freshness as pure functions; the stage over a real store."""
from __future__ import annotations

import time

import numpy as np
import pytest

from funnel.core.config import RerankConfig
from funnel.core.store import Document, DocumentStore
from funnel.index.analyze import Analyzer
from funnel.ranking.serving.features import DocCache
from funnel.ranking.serving.rerank import Reranker, bow_embeddings, freshness, mmr, near_duplicates
from funnel.ranking.serving.stages import Candidates, Request


def unit(*rows):
    a = np.asarray(rows, dtype=np.float32)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def test_mmr_without_diversity_is_the_relevance_order():
    rel = np.array([0.2, 0.9, 0.5, 0.9])
    assert mmr(rel, unit([1, 0], [0, 1], [1, 1], [1, 0]), 1.0, 4).tolist() == [1, 3, 2, 0]


def test_mmr_prefers_a_different_document_over_a_near_copy():
    emb = unit([1, 0], [1, 0.01], [0, 1])  # 0 and 1 are near copies, 2 is different
    rel = np.array([1.0, 0.95, 0.6])
    assert mmr(rel, emb, 1.0, 3).tolist() == [0, 1, 2]
    assert mmr(rel, emb, 0.5, 3).tolist() == [0, 2, 1]  # diversity lifts the different one


def test_mmr_pick_is_the_argmax_of_its_objective():
    rng = np.random.default_rng(0)
    emb = unit(*rng.normal(size=(12, 5)))
    rel = rng.random(12)
    lam = 0.7
    picks = mmr(rel, emb, lam, 6).tolist()
    r = (rel - rel.min()) / (rel.max() - rel.min())
    chosen = []
    for p in picks:  # re-check every step against a direct evaluation of the MMR objective
        gains = {i: lam * r[i] - (1 - lam) * (max(emb[i] @ emb[j] for j in chosen) if chosen else 0.0)
                 for i in range(12) if i not in chosen}
        assert gains[p] == pytest.approx(max(gains.values()))
        chosen.append(p)


def test_near_duplicates_keep_the_first_of_each_cluster():
    emb = unit([1, 0, 0], [1, 0.001, 0], [0, 1, 0], [0, 1, 0.001], [0, 0, 1])
    assert near_duplicates(emb, 0.99).tolist() == [False, True, False, True, False]
    assert not near_duplicates(emb, 1.01).any()  # threshold above 1 turns it off


def test_bow_embeddings_identical_texts_have_cosine_one():
    e = bow_embeddings([["a", "b", "b"], ["a", "b", "b"], ["c"], []])
    assert e[0] @ e[1] == pytest.approx(1.0) and e[0] @ e[2] == pytest.approx(0.0)
    assert np.linalg.norm(e[3]) == 0


def test_freshness_halves_every_half_life():
    now = 1_000_000.0
    f = freshness(np.array([now, now - 86400 * 10, now - 86400 * 20, np.nan]), now, 10.0)
    np.testing.assert_allclose(f, [1.0, 0.5, 0.25, 0.0])


@pytest.fixture
def web_docs(tmp_path):
    now = time.time()
    docs = [
        Document("a1", "Alpha one", "alpha beta gamma delta", url="http://a.example/1", fetched_at=now - 86400 * 300),
        Document("a2", "Alpha two", "alpha beta epsilon zeta", url="http://a.example/2", fetched_at=now - 86400 * 300),
        Document("a3", "Alpha three", "alpha eta theta iota", url="http://a.example/3", fetched_at=now - 86400 * 300),
        Document("b1", "Beta one", "kappa lambda mu nu", url="http://b.example/1", fetched_at=now),
        Document("dup", "Alpha one", "alpha beta gamma delta", url="http://c.example/x", fetched_at=now - 86400 * 300),
        Document("c1", "Gamma", "xi omicron pi rho", url="http://c.example/1", fetched_at=None),
    ]
    store = DocumentStore(tmp_path / "store.sqlite")
    store.write_batch(docs)
    yield DocCache(store, Analyzer()), now
    store.close()


def cands(ids, scores):
    return Candidates(np.arange(len(ids), dtype=np.int64), list(ids), np.asarray(scores, np.float32))


def test_rerank_stage_rules(web_docs):
    docs, now = web_docs
    ids = ["a1", "dup", "a2", "a3", "b1", "c1"]
    c = cands(ids, [6, 5.9, 5, 4, 3, 2])
    off = RerankConfig(dedup_threshold=1.5)
    out = Reranker(off, docs).rank(Request(query="alpha", k=10), c, 10)
    assert out.doc_ids == ids and out.trace[-1].stage == "rerank"  # every rule off: order unchanged
    out = Reranker(RerankConfig(), docs).rank(Request(query="alpha", k=10), c, 10)
    assert "dup" not in out.doc_ids and out.doc_ids[0] == "a1"  # identical text: the lower copy goes
    out = Reranker(RerankConfig(dedup_threshold=1.5, per_host_cap=2), docs).rank(Request(k=10), c, 10)
    assert out.doc_ids == ["a1", "dup", "a2", "b1", "c1"]  # a3 is a.example's third
    req = Request(k=3, blocked=["a1", "b1"], pinned=["c1", "zzz"])
    out = Reranker(off, docs).rank(req, c, 3)
    assert out.doc_ids == ["c1", "dup", "a2"]  # pinned first (unknown ids ignored), blocked gone, cut to k
    out = Reranker(RerankConfig(dedup_threshold=1.5, freshness_weight=10.0), docs, now=lambda: now).rank(
        Request(k=10), c, 10)
    assert out.doc_ids[0] == "b1"  # fetched today: +10; the others are 300 days old (+~0)
    assert out.scores[0] == pytest.approx(3 + 10, abs=1e-3)

"""Pseudo-relevance feedback (RM3): the model by hand, the forward view of the postings, weighted BM25,
the expansion drawn from the feedback documents, and the BM25 route with PRF off unchanged."""
from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from funnel.core.config import load_config
from funnel.core.errors import FunnelError
from funnel.crawler.beir import read_corpus
from funnel.index.bm25 import top_k
from funnel.index.builder import doc_text
from funnel.index.searcher import Bm25Retriever
from funnel.ranking.serving.prf import DocTerms, Rm3, rm3_weights
from funnel.ranking.serving.recall import Bm25Recall, build_recall
from funnel.ranking.serving.stages import Candidates, Request

QUERY = "Oxidative DNA damage activates STING signalling."


def _config(home, *sets):
    return load_config(None, [f"paths.home={json.dumps(str(home))}", *sets])


@pytest.fixture(scope="module")
def retriever(tiny_home):
    return Bm25Retriever.open(tiny_home / "index")


def test_rm3_weights_by_hand():
    # relevance model: x = 2*2/4 + 1*1/2 = 1.5, a = 2*2/4 = 1.0, y = 1*1/2 = 0.5; top 2 (x, a) L1-normalised
    # to .6, .4; the query (a, b) to .5, .5; lambda = 0.5
    w = rm3_weights(["a", "b"], [{"x": 2, "a": 2}, {"y": 1, "x": 1}], [2.0, 1.0], n_terms=2, orig_weight=0.5)
    assert w == pytest.approx({"a": 0.25 + 0.2, "b": 0.25, "x": 0.3})
    assert sum(w.values()) == pytest.approx(1.0)
    # lambda = 1: the original query alone; no feedback: the query alone; no query: nothing to expand from
    assert rm3_weights(["a", "b"], [{"x": 1}], [1.0], orig_weight=1.0) == {"a": 0.5, "b": 0.5, "x": 0.0}
    assert rm3_weights(["a", "a", "b"], [], []) == pytest.approx({"a": 2 / 3, "b": 1 / 3})
    assert rm3_weights([], [], []) == {}


def test_doc_terms_are_the_indexed_terms(tiny_dir, retriever):
    """The postings transposed give each document's analysed text, term by term."""
    docs = {d.doc_id: d for d in read_corpus(tiny_dir, source="beir")}
    forward = DocTerms(retriever.reader)
    for o, doc_id in enumerate(retriever.reader.doc_ids):
        assert forward(o) == Counter(retriever.analyzer(doc_text(docs[doc_id])))


def test_weighted_terms_scale_each_term(retriever):
    terms = retriever.analyzer(QUERY)
    weights = [0.5, 2.0, 0.0, 1.0, 3.0, 0.25][: len(terms)]
    assert len(weights) == len(terms)
    want = sum(w * retriever.score_terms([t]) for t, w in zip(terms, weights))
    np.testing.assert_allclose(retriever.score_terms(terms, weights), want, rtol=1e-6)
    # no weights: exactly the unweighted sum
    assert np.array_equal(retriever.score_terms(terms, None), retriever.score_terms(terms))
    with pytest.raises(FunnelError, match="term weights"):
        retriever.score_terms(terms, [1.0])


def test_expansion_terms_come_from_the_feedback_documents(retriever):
    rm3 = Rm3(retriever, docs=3, terms=8, orig_weight=0.6)
    terms = retriever.analyzer(QUERY)
    plain, expanded, weights = rm3.score(terms)
    assert np.array_equal(plain, retriever.score_terms(terms))
    fb = top_k(plain, 3)
    fb_vocab = set().union(*(rm3.doc_terms(o) for o in fb.tolist()))
    new = set(weights) - set(terms)
    assert new and new <= fb_vocab and len(new) <= 8
    assert sum(weights.values()) == pytest.approx(1.0)
    assert sum(weights[t] for t in set(terms)) >= 0.6 - 1e-9  # the query keeps at least its lambda
    # the expanded query scores every document as weighted BM25
    order = list(weights)
    np.testing.assert_allclose(expanded, retriever.score_terms(order, [weights[t] for t in order]))


def test_a_query_with_no_hit_expands_to_nothing(retriever):
    plain, expanded, weights = Rm3(retriever).score(retriever.analyzer("zzzqqq xxyyzz"))
    assert weights == {} and not plain.any() and not expanded.any()


def test_prf_off_gives_exactly_the_old_scores(tiny_home, retriever):
    stage = build_recall(_config(tiny_home), "bm25", retriever=retriever)
    assert isinstance(stage, Bm25Recall) and stage.prf is None
    hits = retriever.search(QUERY, 1000)
    out = stage.rank(Request(query=QUERY), Candidates.empty(), 1000)
    assert out.doc_ids == hits.doc_ids
    assert np.array_equal(out.scores, hits.scores.astype(np.float32))
    assert np.array_equal(out.features["bm25"], out.scores)


def test_prf_route_ranks_by_the_expanded_query(tiny_home, retriever):
    config = _config(tiny_home, "recall.prf=true", "recall.prf_docs=3", "recall.prf_terms=8", "recall.prf_weight=0.6")
    stage = build_recall(config, "bm25", retriever=retriever)
    assert stage.prf is not None and (stage.prf.docs, stage.prf.terms, stage.prf.orig_weight) == (3, 8, 0.6)
    out = stage.rank(Request(query=QUERY), Candidates.empty(), 1000)
    plain, expanded, _ = stage.prf.score(retriever.analyzer(QUERY))
    want = top_k(expanded, 1000)
    assert out.doc_ids == retriever.reader.doc_id_array[want].tolist()
    np.testing.assert_allclose(out.scores, expanded[want], rtol=1e-6)
    # the bm25 feature stays the plain BM25 of the query (0 for a document only expansion terms match)
    np.testing.assert_allclose(out.features["bm25"], plain[want], rtol=1e-6)
    assert len(out) > np.count_nonzero(plain)  # expansion terms reach documents the query missed


def test_prf_settings_are_checked(tiny_home):
    with pytest.raises(FunnelError, match="recall.prf_weight"):
        _config(tiny_home, "recall.prf_weight=1.5")
    with pytest.raises(FunnelError, match="recall.prf_docs"):
        _config(tiny_home, "recall.prf_docs=0")

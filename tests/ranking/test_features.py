"""funnel.ranking.serving.features on the tiny index: columns agree with the index and with hand computation."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from funnel.core.store import DocumentStore
from funnel.index.searcher import Bm25Retriever
from funnel.ranking.serving.features import FEATURES, DocCache, FeatureContext, compute_features, shortest_window


PR_DOC = "16066726"  # a tiny-corpus document given a PageRank below


def brute_window(positions):
    best = None
    for combo in itertools.product(*positions):
        span = max(combo) - min(combo) + 1
        best = span if best is None else min(best, span)
    return best


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.integers(0, 40), min_size=1, max_size=5, unique=True), min_size=1, max_size=4))
def test_shortest_window_matches_brute_force(lists):
    positions = [np.array(sorted(x)) for x in lists]
    assert shortest_window(positions) == brute_window(positions)


@pytest.fixture(scope="module")
def ctx(tiny_home):
    retriever = Bm25Retriever.open(tiny_home / "index")
    store = DocumentStore(tiny_home / "store.sqlite", readonly=True)
    yield FeatureContext(retriever, DocCache(store, retriever.analyzer), {PR_DOC: 0.5})
    store.close()


def test_columns_agree_with_index_and_text(ctx):
    query = "breast cancer environmental factors"
    hits = ctx.retriever.search(query, 20)
    X = compute_features(ctx, query, hits.ords, hits.doc_ids)
    col = {n: i for i, n in enumerate(FEATURES)}
    assert X.shape == (len(hits), len(FEATURES)) and X.dtype == np.float32
    np.testing.assert_allclose(X[:, col["bm25"]], hits.scores, rtol=1e-5)  # the index's own BM25
    terms = list(dict.fromkeys(ctx.retriever.analyzer(query)))
    for row, info in enumerate(ctx.docs.get(hits.doc_ids)):
        present = [t in info.terms for t in terms]
        assert X[row, col["coverage"]] == pytest.approx(np.mean(present))
        assert X[row, col["title_coverage"]] == pytest.approx(np.mean([t in info.title_terms for t in terms]))
        assert X[row, col["doc_len"]] == pytest.approx(np.log1p(len(info.terms)))
        assert 0 < X[row, col["proximity"]] <= 1 if any(present) else X[row, col["proximity"]] == 0
    assert np.isnan(X[:, col["dense"]]).all()  # no dense model: missing, not 0
    assert (X[:, col["query_len"]] == len(terms)).all()
    pr = dict(zip(hits.doc_ids, X[:, col["pagerank"]]))
    assert all(v == 0 for d, v in pr.items() if d != PR_DOC)


def test_dense_and_pagerank_columns(ctx):
    ords = np.array([ctx.retriever.reader.ord_of(PR_DOC)])
    X = compute_features(ctx, "anything at all", ords, [PR_DOC], dense=np.array([0.25]))
    assert X[0, FEATURES.index("dense")] == pytest.approx(0.25)
    assert X[0, FEATURES.index("pagerank")] == pytest.approx(np.log1p(0.5))  # one node: N x PR = 0.5


def test_empty_candidates_and_query(ctx):
    assert compute_features(ctx, "cancer", np.zeros(0, np.int64), []).shape == (0, len(FEATURES))
    ords = np.arange(3)
    X = compute_features(ctx, "", ords, [ctx.retriever.reader.doc_ids[i] for i in ords])
    assert (X[:, FEATURES.index("bm25")] == 0).all() and (X[:, FEATURES.index("coverage")] == 0).all()

"""BM25 / TF-IDF scoring against hand computation, top-k selection, boolean AND against brute force."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from funnel.core.config import AnalyzerConfig, BM25Config
from funnel.core.errors import FunnelError
from funnel.core.store import Document
from funnel.index.analyze import Analyzer
from funnel.index.bm25 import top_k
from funnel.index.builder import IndexWriter, build_segment
from funnel.index.searcher import Bm25Retriever, IndexReader

PLAIN = AnalyzerConfig(stemmer="", stopwords=False, min_token_len=1)
DOCS = ["apple banana apple", "banana cherry", "apple cherry cherry cherry date", "date"]


def _index(tmp_path, texts, analyzer_config=PLAIN, name="idx"):
    analyzer = Analyzer(analyzer_config)
    docs = [Document(doc_id=f"d{i}", text=t, seq=i + 1) for i, t in enumerate(texts)]
    IndexWriter(tmp_path / name, analyzer).rebuild(build_segment(docs, analyzer, progress=False), len(docs))
    return tmp_path / name


def _bm25_by_hand(query, texts, k1, b):
    """Lucene's BM25 (as in Lucene 8+ and bm25s' default): idf = ln(1 + (N - df + .5)/(df + .5)),
    tf part = tf / (tf + k1 (1 - b + b |d| / avgdl)), without the constant (k1 + 1) factor."""
    docs = [t.split() for t in texts]
    n, avg = len(docs), sum(map(len, docs)) / len(docs)
    out = []
    for d in docs:
        s = 0.0
        for q in query.split():
            df = sum(q in x for x in docs)
            if not df:
                continue
            idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
            tf = d.count(q)
            s += idf * tf / (tf + k1 * (1 - b + b * len(d) / avg))
        out.append(s)
    return out


@pytest.mark.parametrize("k1,b", [(0.9, 0.4), (1.5, 0.75), (1.2, 0.0)])
def test_bm25_matches_hand_computation(tmp_path, k1, b):
    r = Bm25Retriever.open(_index(tmp_path, DOCS), BM25Config(k1=k1, b=b))
    for query in ["apple", "cherry date", "apple apple banana", "zebra", "date cherry apple banana"]:
        np.testing.assert_allclose(r.score(query), _bm25_by_hand(query, DOCS, k1, b), rtol=1e-6)


def test_search_ranks_and_ties(tmp_path):
    r = Bm25Retriever.open(_index(tmp_path, DOCS))
    hits = r.search("cherry", k=10)
    assert hits.doc_ids == ["d2", "d1"]  # tf 3 in a longer doc beats tf 1
    assert np.all(np.diff(hits.scores) <= 0)
    assert r.search("zebra").doc_ids == []
    same = Bm25Retriever.open(_index(tmp_path, ["x y", "x y", "x y"], name="ties"))
    assert same.search("x", k=2).doc_ids == ["d0", "d1"]  # equal scores: lower ordinal first


def test_tfidf_scorer(tmp_path):
    r = Bm25Retriever.open(_index(tmp_path, DOCS), BM25Config(scorer="tfidf"))
    scores = r.score("cherry")
    assert scores[0] == 0 and scores[3] == 0 and scores[2] > scores[1] > 0
    with pytest.raises(FunnelError, match="unknown scorer"):
        Bm25Retriever.open(_index(tmp_path, DOCS, name="i2"), BM25Config(scorer="nope"))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0, 5, allow_nan=False).map(lambda x: round(x, 1)), min_size=0, max_size=60),
       st.integers(1, 70))
def test_top_k_matches_a_full_sort(values, k):
    scores = np.asarray(values, dtype=np.float64)
    expected = sorted((i for i in range(len(scores)) if scores[i] > 0), key=lambda i: (-scores[i], i))[:k]
    assert top_k(scores, k).tolist() == expected


VOCAB = ["aa", "bb", "cc", "dd", "ee"]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.sampled_from(VOCAB), min_size=1, max_size=8), min_size=1, max_size=25),
       st.lists(st.sampled_from(VOCAB), min_size=1, max_size=3), st.integers(1, 4))
def test_boolean_and_equals_brute_force(tmp_path_factory, texts, query, n_segments):
    """Over any corpus split into any number of segments, AND returns exactly the docs with every term."""
    analyzer = Analyzer(PLAIN)
    path = tmp_path_factory.mktemp("and")
    writer = IndexWriter(path, analyzer)
    docs = [Document(doc_id=f"d{i}", text=" ".join(t), seq=i + 1) for i, t in enumerate(texts)]
    chunks = np.array_split(np.arange(len(docs)), n_segments)
    for j, chunk in enumerate(c for c in chunks if len(c)):
        seg = build_segment([docs[i] for i in chunk], analyzer, progress=False)
        (writer.rebuild if j == 0 else writer.add)(seg, int(chunk[-1]) + 1)
    r = Bm25Retriever(IndexReader(path))
    got = r.boolean_and(" ".join(query))
    expected = {f"d{i}" for i, t in enumerate(texts) if set(query) <= set(t)}
    assert set(got.doc_ids) == expected and len(got.doc_ids) == len(expected)
    assert np.all(np.diff(got.scores) <= 0)
    assert r.boolean_and(" ".join(query), k=1).doc_ids == got.doc_ids[:1]


def test_boolean_and_on_tiny_corpus(tiny_home):
    """Against brute force over the store's documents, for real queries (English and Chinese)."""
    from funnel.core.store import DocumentStore
    from funnel.index.builder import doc_text

    r = Bm25Retriever.open(tiny_home / "index")
    with DocumentStore(tiny_home / "store.sqlite", readonly=True) as store:
        doc_terms = {d.doc_id: set(r.analyzer(doc_text(d))) for d in store.iter_docs()}
    sizes = []
    for query in ["cell protein", "cancer risk", "patients treatment", "美食 攻略", "gene expression cells"]:
        terms = set(r.analyzer(query))
        expected = {d for d, t in doc_terms.items() if terms <= t}
        got = r.boolean_and(query)
        assert set(got.doc_ids) == expected and len(got.doc_ids) == len(expected), query
        sizes.append(len(expected))
    assert max(sizes) >= 3, "queries should match several documents"
    assert r.boolean_and("cell zzzunknownzzz").doc_ids == []
    assert r.boolean_and("the of").doc_ids == []  # only stop words

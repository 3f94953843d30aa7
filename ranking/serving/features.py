"""Coarse-ranking features of (query, candidate) pairs: one function, `compute_features`, feeds both
LightGBM training (`funnel.ranking.training.train_coarse`) and serving (`funnel.ranking.serving.coarse`), so the two cannot drift.

Every feature is cheap: index statistics, the analysed query and the candidate's analysed text
(cached per document), the dense cosine the recall stage already computed, and PageRank.

| name | meaning |
|---|---|
| bm25 | BM25 of the whole document (title + body), from the index |
| bm25_title | BM25-style score of the title alone (index idf, k1, no length normalisation) |
| title_coverage | fraction of distinct query terms present in the title |
| coverage | fraction of distinct query terms present in the document |
| idf_coverage | idf-weighted fraction of the query present in the document |
| proximity | matched terms / length of the shortest window holding every matched distinct term |
| doc_len | log(1 + analysed length) |
| query_len | distinct analysed query terms |
| query_max_idf, query_mean_idf | idf statistics of the query |
| dense | cosine of query and document embeddings (NaN when no dense model is loaded) |
| pagerank | log(1 + N x PageRank) of the document (0 when no PageRank was computed) |
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import numpy as np

FEATURES = ("bm25", "bm25_title", "title_coverage", "coverage", "idf_coverage", "proximity", "doc_len",
            "query_len", "query_max_idf", "query_mean_idf", "dense", "pagerank")


@dataclass
class DocInfo:
    """What the ranking stages need of a document, analysed once and cached."""
    title_terms: list[str]
    terms: list[str]  # analysed title + body, in order
    text: str  # "title. body": what the cross-encoder reads
    host: str
    fetched_at: float | None
    positions: dict[str, np.ndarray] = field(default_factory=dict)  # term -> its positions in `terms`
    title_tf: dict[str, int] = field(default_factory=dict)

    def __post_init__(self):
        # Indexed once per document, so a query's features only look its terms up.
        pos: dict[str, list[int]] = {}
        for p, t in enumerate(self.terms):
            pos.setdefault(t, []).append(p)
        self.positions = {t: np.asarray(v) for t, v in pos.items()}
        for t in self.title_terms:
            self.title_tf[t] = self.title_tf.get(t, 0) + 1


class DocCache:
    """Document lookups for the ranking stages: store rows -> `DocInfo`, LRU-cached by doc id."""

    def __init__(self, store, analyzer, max_docs: int = 200_000):
        self.store = store
        self.analyzer = analyzer
        self.max_docs = max_docs
        self._cache: OrderedDict[str, DocInfo] = OrderedDict()
        self._lock = threading.Lock()  # request threads share the cache; the store read and analysis run outside it

    def get(self, doc_ids: list[str]) -> list[DocInfo | None]:
        with self._lock:
            missing = [d for d in doc_ids if d not in self._cache]
        if missing:
            fresh = {}
            for d, doc in self.store.get_many(missing).items():
                title, body = doc.title or "", doc.text or ""
                fresh[d] = DocInfo(self.analyzer(title) if title else [],
                                   self.analyzer(f"{title}\n{body}" if title else body),
                                   f"{title}. {body}" if title else body,
                                   urlsplit(doc.url).hostname or "" if doc.url else "", doc.fetched_at)
        with self._lock:
            if missing:
                self._cache.update(fresh)
                while len(self._cache) > self.max_docs:
                    self._cache.popitem(last=False)
            out = []
            for d in doc_ids:
                info = self._cache.get(d)
                if info is None and missing:
                    info = fresh.get(d)  # evicted at once by a tiny max_docs
                elif info is not None:
                    self._cache.move_to_end(d)
                out.append(info)
        return out

    def texts(self, doc_ids: list[str]) -> list[str]:
        return [i.text if i else "" for i in self.get(doc_ids)]


@dataclass
class FeatureContext:
    """Everything `compute_features` reads besides the query and candidates."""
    retriever: object  # funnel.index.searcher.Bm25Retriever
    docs: DocCache
    pagerank: dict[str, float] = field(default_factory=dict)


def shortest_window(positions: list[np.ndarray]) -> int:
    """Length of the shortest token window containing at least one position from every list."""
    if not positions:
        return 0
    if len(positions) == 1:
        return 1
    tagged = sorted((int(p), i) for i, ps in enumerate(positions) for p in ps)
    need, have, counts, best, lo = len(positions), 0, [0] * len(positions), 1 << 30, 0
    for hi, (pos, term) in enumerate(tagged):
        counts[term] += 1
        if counts[term] == 1:
            have += 1
        while have == need:
            best = min(best, pos - tagged[lo][0] + 1)
            counts[tagged[lo][1]] -= 1
            if counts[tagged[lo][1]] == 0:
                have -= 1
            lo += 1
    return best


def compute_features(ctx: FeatureContext, query: str, ords: np.ndarray, doc_ids: list[str],
                     dense: np.ndarray | None = None) -> np.ndarray:
    """(n, len(FEATURES)) float32 feature matrix of the candidates, columns in `FEATURES` order."""
    r = ctx.retriever
    terms = r.analyzer(query)
    uniq = list(dict.fromkeys(terms))
    n = len(doc_ids)
    X = np.zeros((n, len(FEATURES)), dtype=np.float32)
    col = {name: i for i, name in enumerate(FEATURES)}
    X[:, col["dense"]] = np.nan if dense is None else dense
    if n == 0:
        return X
    reader = r.reader
    ords = np.asarray(ords, dtype=np.int64)
    dfs = [reader.df(t) for t in uniq]
    idf = np.array([r._idf(df, reader.n_docs) if df else 0.0 for df in dfs], dtype=np.float64)  # (n_uniq,)
    idf_total = float(idf.sum()) or 1.0
    X[:, col["bm25"]] = r.score_terms(terms)[ords] if terms else 0.0
    X[:, col["doc_len"]] = np.log1p(reader.doc_lens[ords])
    X[:, col["query_len"]] = len(uniq)
    X[:, col["query_max_idf"]] = idf.max() if len(idf) else 0.0
    X[:, col["query_mean_idf"]] = idf.mean() if len(idf) else 0.0
    k1 = r.config.k1
    n_nodes = max(len(ctx.pagerank), 1)
    idf_of = dict(zip(uniq, idf.tolist()))
    nq = len(uniq)
    rows = np.zeros((n, 5), dtype=np.float64)  # bm25_title, title_coverage, coverage, idf_coverage, proximity
    # Plain Python per candidate: a handful of dict lookups beats numpy's per-call overhead here.
    for row, info in enumerate(ctx.docs.get(doc_ids)):
        if info is None or not nq:
            continue
        title_tf, positions = info.title_tf, info.positions
        tscore = tcov = cov = icov = 0.0
        matched = []
        for t in uniq:
            tf = title_tf.get(t, 0)
            if tf:
                tscore += idf_of[t] * tf * (k1 + 1) / (tf + k1)
                tcov += 1
            p = positions.get(t)
            if p is not None:
                cov += 1
                icov += idf_of[t]
                matched.append(p)
        rows[row] = (tscore, tcov / nq, cov / nq, icov / idf_total,
                     len(matched) / shortest_window(matched) if matched else 0.0)
    for j, name in enumerate(("bm25_title", "title_coverage", "coverage", "idf_coverage", "proximity")):
        X[:, col[name]] = rows[:, j]
    if ctx.pagerank:
        X[:, col["pagerank"]] = np.log1p(n_nodes * np.array([ctx.pagerank.get(d, 0.0) for d in doc_ids]))
    return X

"""Query rewriting by pseudo-relevance feedback (RM3) over BM25. Feeds the BM25 recall route
(`funnel.ranking.serving.recall.Bm25Recall`, on with ``recall.prf``).

Short queries miss the vocabulary of the documents that answer them. RM3 (Abdul-Jaleel et al. 2004,
as Anserini implements it) assumes the first BM25 results are relevant and borrows their words:

1. BM25 with the query; the top ``docs`` documents are the feedback set F, each with its score s_d;
2. relevance model: P(t|R) proportional to sum over d in F of s_d x tf(t, d) / |d|, over the terms of
   the feedback documents (a term in more than 10% of the documents, or of one character, says
   nothing about the topic and is left out, as in Anserini); the ``terms`` best are kept, L1-normalised;
3. the expanded query: w(t) = lambda x q(t) + (1 - lambda) x P(t|R), q(t) the original query's term
   counts L1-normalised, lambda = ``orig_weight``;
4. BM25 again with every term's contribution scaled by w(t).

`rm3_weights` is the pure model (term counts in, weights out); `DocTerms` gives a feedback document's
term counts from the index itself (its postings transposed once, on first use), so no text is re-read.
"""
from __future__ import annotations

from collections import Counter

import numpy as np

from funnel.index.bm25 import top_k

MIN_TERM_LEN = 2  # feedback terms of one character (digits, letters) are noise in an expansion
MAX_DF_RATIO = 0.1  # feedback terms in more than this share of the documents are left out


def rm3_weights(query_terms: list[str], fb_docs: list[dict[str, int]], fb_scores: list[float],
                n_terms: int = 10, orig_weight: float = 0.5) -> dict[str, float]:
    """The expanded query {term: weight} (weights sum to 1; best expansion terms first after the query's).

    query_terms: the analysed query (repeats count); fb_docs: each feedback document's {term: tf},
    already filtered; fb_scores: their first-pass scores (the documents' weights in the model).
    """
    q = Counter(query_terms)
    total_q = sum(q.values())
    q_part = {t: c / total_q for t, c in q.items()}  # sums to 1 (or empty)
    model: dict[str, float] = {}
    for doc, score in zip(fb_docs, fb_scores):
        length = sum(doc.values())
        if length <= 0:
            continue
        for term, tf in doc.items():
            model[term] = model.get(term, 0.0) + float(score) * tf / length
    best = sorted(model.items(), key=lambda kv: (-kv[1], kv[0]))[:n_terms]  # ties by term: deterministic
    norm = sum(w for _, w in best)
    fb_part = {t: w / norm for t, w in best} if norm > 0 else {}  # sums to 1 (or empty)
    if not q_part or not fb_part:  # one side is empty: the other carries all the weight
        return q_part or fb_part
    weights = {t: orig_weight * w for t, w in q_part.items()}
    for t, w in fb_part.items():
        weights[t] = weights.get(t, 0.0) + (1.0 - orig_weight) * w
    return weights


def _segments(reader) -> list[tuple[object, int]]:
    """(segment, global ordinal of its first document) for a single or sharded `IndexReader`."""
    if hasattr(reader, "shards"):
        return [(seg, int(sbase) + int(base)) for shard, sbase in zip(reader.shards, reader.bases)
                for seg, base in zip(shard.segments, shard.bases)]
    return [(seg, int(base)) for seg, base in zip(reader.segments, reader.bases)]


class DocTerms:
    """A document's term counts, by global ordinal: the index's postings transposed (per segment, on
    first use: two int32 arrays as long as the postings)."""

    def __init__(self, reader):
        self.reader = reader
        self._segs = _segments(reader)
        self._bases = np.array([b for _, b in self._segs], dtype=np.int64)
        self._forward: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def _transpose(self, i: int):
        if i not in self._forward:
            seg, _ = self._segs[i]
            offsets = np.asarray(seg.offsets)
            doc_ords = np.asarray(seg.doc_ords)
            term_ids = np.repeat(np.arange(len(seg.terms), dtype=np.int32), np.diff(offsets))  # (n_postings,)
            order = np.argsort(doc_ords, kind="stable")
            doc_offsets = np.zeros(seg.n_docs + 1, dtype=np.int64)
            np.cumsum(np.bincount(doc_ords, minlength=seg.n_docs), out=doc_offsets[1:])
            self._forward[i] = (doc_offsets, term_ids[order], np.asarray(seg.tfs)[order])
        return self._forward[i]

    def __call__(self, ord_: int) -> dict[str, int]:
        i = int(np.searchsorted(self._bases, ord_, side="right")) - 1
        seg, base = self._segs[i]
        doc_offsets, term_ids, tfs = self._transpose(i)
        local = int(ord_) - base
        lo, hi = doc_offsets[local], doc_offsets[local + 1]
        return {seg.terms[t]: int(tf) for t, tf in zip(term_ids[lo:hi].tolist(), tfs[lo:hi].tolist())}


class Rm3:
    """RM3 expansion over a `Bm25Retriever` (or its sharded twin): `score` gives the plain and the
    expanded query's scores of every document."""

    def __init__(self, retriever, docs: int = 10, terms: int = 10, orig_weight: float = 0.5):
        self.retriever = retriever
        self.docs, self.terms, self.orig_weight = docs, terms, orig_weight
        self.doc_terms = DocTerms(retriever.reader)
        self._max_df = MAX_DF_RATIO * retriever.reader.n_docs
        self._df_ok: dict[str, bool] = {}

    def _keep(self, term: str) -> bool:
        ok = self._df_ok.get(term)
        if ok is None:
            ok = len(term) >= MIN_TERM_LEN and self.retriever.reader.df(term) <= self._max_df
            if len(self._df_ok) > 1_000_000:  # bounded, so a long-lived server stays small
                self._df_ok.clear()
            self._df_ok[term] = ok
        return ok

    def expand(self, query_terms: list[str], scores: np.ndarray) -> dict[str, float]:
        """The expanded query from the first pass's (n_total,) scores; {} when nothing matched."""
        fb = top_k(scores, self.docs)
        docs = [{t: tf for t, tf in self.doc_terms(o).items() if self._keep(t)} for o in fb.tolist()]
        if not len(fb):
            return {}
        return rm3_weights(query_terms, docs, scores[fb].tolist(), self.terms, self.orig_weight)

    def score(self, query_terms: list[str]) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
        """(plain BM25 (n_total,), expanded query's scores (n_total,), the expanded query)."""
        plain = self.retriever.score_terms(query_terms)
        weights = self.expand(query_terms, plain)
        if not weights:
            return plain, plain, weights
        terms = list(weights)
        return plain, self.retriever.score_terms(terms, [weights[t] for t in terms]), weights

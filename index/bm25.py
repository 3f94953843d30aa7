"""Scoring functions for term-at-a-time retrieval: small pure functions over numpy arrays.

A posting's score splits into idf(term) x tf_part(tf, doc length). The tf part is computed
eagerly once per index load (it needs the collection's average length, which changes as
segments are added), the idf part per query.
"""
from __future__ import annotations

import numpy as np


def idf_bm25(df: np.ndarray | float, n_docs: int) -> np.ndarray | float:
    """Lucene's BM25 idf: log(1 + (N - df + 0.5) / (df + 0.5)); always positive."""
    return np.log1p((n_docs - df + 0.5) / (df + 0.5))


def tf_bm25(tf: np.ndarray, doc_len: np.ndarray, avg_len: float, k1: float, b: float) -> np.ndarray:
    """Lucene's BM25 tf saturation (Lucene 8+ drops the constant (k1 + 1) factor: same ranking)."""
    tf = tf.astype(np.float32)
    norm = np.float32(k1) * (np.float32(1 - b) + np.float32(b / avg_len) * doc_len.astype(np.float32))
    return tf / (tf + norm)


def idf_tfidf(df: np.ndarray | float, n_docs: int) -> np.ndarray | float:
    """Smoothed idf: 1 + log((1 + N) / (1 + df))."""
    return 1.0 + np.log((1.0 + n_docs) / (1.0 + df))


def tf_tfidf(tf: np.ndarray, doc_len: np.ndarray, avg_len: float, k1: float, b: float) -> np.ndarray:
    """Sublinear tf, 1 + log(tf), normalised by sqrt(doc length) as in classic Lucene TF-IDF."""
    return (1.0 + np.log(tf.astype(np.float32))) / np.sqrt(np.maximum(doc_len, 1).astype(np.float32))


SCORERS = {"bm25": (idf_bm25, tf_bm25), "tfidf": (idf_tfidf, tf_tfidf)}


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k highest positive scores, best first; ties broken by lower index.

    Selection runs over the matched (non-zero) documents only: a dense accumulator is mostly
    zeros, and partitioning around many equal values is what made this slow.
    """
    cand = np.flatnonzero(scores > 0)  # ascending index
    vals = scores[cand]
    if k < len(cand):
        keep = np.argpartition(-vals, k - 1)[:k]
        cand, vals = cand[keep], vals[keep]
        # the partition may cut inside a run of ties at the k-th value: resolve by lower index
        kth = vals.min()
        ties_out = np.flatnonzero(scores == kth)
        if len(ties_out) > np.count_nonzero(vals == kth):
            above = vals > kth
            cand = np.concatenate([cand[above], ties_out[: k - int(above.sum())]])
            vals = scores[cand]
    if len(cand) < 2:
        return cand
    # Order by (score desc, ordinal asc). Most queries have ties, and a stable sort costs 5x
    # numpy's SIMD quicksort, so: quicksort the scores, number the distinct values in that
    # order, and quicksort one int64 key (value number << 32 | ordinal), which has no ties.
    order = np.argsort(-vals)
    ranked = vals[order]
    group = np.empty(len(ranked), dtype=np.int64)
    group[0] = 0
    np.cumsum(ranked[1:] != ranked[:-1], out=group[1:])
    key = np.empty(len(ranked), dtype=np.int64)
    key[order] = group
    return cand[np.argsort((key << 32) | cand)]

"""Re-ranking, the last stage: turns the fine ranker's list into what the user sees. Business rules
(pinned and blocked documents), near-duplicate removal, a per-host cap, an optional freshness boost
and MMR diversity over document embeddings; all set by `funnel.core.config.RerankConfig`.

Embeddings come from the dense model when the pipeline has one; otherwise a hashed bag of the
document's analysed terms stands in (`bow_embeddings`), so the stage works on any index.
"""
from __future__ import annotations

import time
import zlib

import numpy as np

from funnel.core.config import RerankConfig
from funnel.ranking.serving.stages import Candidates, Request, StageTrace

BOW_DIM = 4096


def bow_embeddings(term_lists: list[list[str]], dim: int = BOW_DIM) -> np.ndarray:
    """(n, dim) float32 L2-normalised hashed term-frequency vectors (crc32 of each term mod dim)."""
    out = np.zeros((len(term_lists), dim), dtype=np.float32)
    for i, terms in enumerate(term_lists):
        for t in terms:
            out[i, zlib.crc32(t.encode("utf-8")) % dim] += 1.0
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.maximum(norms, 1e-12)


def near_duplicates(emb: np.ndarray, threshold: float) -> np.ndarray:
    """bool (n,): True where a document's cosine to an earlier kept document exceeds `threshold`."""
    n = len(emb)
    dup = np.zeros(n, dtype=bool)
    if n == 0 or threshold > 1.0:
        return dup
    sims = emb @ emb.T  # (n, n)
    for i in range(1, n):
        kept = ~dup[:i]
        if kept.any() and sims[i, :i][kept].max() > threshold:
            dup[i] = True
    return dup


def mmr(relevance: np.ndarray, emb: np.ndarray, lam: float, k: int) -> np.ndarray:
    """Maximal Marginal Relevance order (Carbonell & Goldstein, 1998): positions of the k picks.

    Each step picks ``argmax lam * rel - (1 - lam) * max cosine to the picks so far``, with the
    relevance min-max scaled to [0, 1] so that `lam` weighs two quantities of the same range.
    """
    n = len(relevance)
    k = min(k, n)
    if n == 0:
        return np.zeros(0, np.int64)
    if lam >= 1.0:
        return np.lexsort((np.arange(n), -relevance))[:k]
    span = float(relevance.max() - relevance.min())
    rel = (relevance - relevance.min()) / span if span > 0 else np.ones(n)
    sims = emb @ emb.T  # (n, n)
    picked: list[int] = []
    max_sim = np.full(n, -np.inf)
    avail = np.ones(n, dtype=bool)
    for _ in range(k):
        penalty = np.where(np.isfinite(max_sim), max_sim, 0.0)
        gain = np.where(avail, lam * rel - (1 - lam) * penalty, -np.inf)
        i = int(np.argmax(gain))
        picked.append(i)
        avail[i] = False
        max_sim = np.maximum(max_sim, sims[:, i])
    return np.asarray(picked, dtype=np.int64)


def freshness(fetched_at: np.ndarray, now: float, half_life_days: float) -> np.ndarray:
    """2^(-age / half-life) per document, 0 where the fetch time is unknown (NaN)."""
    age_days = np.maximum(now - fetched_at, 0.0) / 86400.0
    return np.where(np.isnan(fetched_at), 0.0, np.exp2(-age_days / max(half_life_days, 1e-9)))


class Reranker:
    """Re-rank stage: blocked out, freshness in, duplicates out, MMR order, host cap, pinned on top."""
    name = "rerank"

    def __init__(self, config: RerankConfig, docs, *, embed=None, lookup_ord=None, now=time.time):
        self.config = config
        self.docs = docs  # funnel.ranking.serving.features.DocCache
        self.embed = embed  # optional: doc ids -> (n, dim) L2-normalised float32
        self.lookup_ord = lookup_ord  # optional: doc id -> index ordinal or None (for pinned documents)
        self.now = now

    def _embeddings(self, doc_ids: list[str]) -> np.ndarray:
        if self.embed is not None:
            return np.asarray(self.embed(doc_ids), dtype=np.float32)
        return bow_embeddings([i.terms if i else [] for i in self.docs.get(doc_ids)])

    def rank(self, request: Request, candidates: Candidates, k: int) -> Candidates:
        t0 = time.perf_counter()
        c = self.config
        blocked = set(request.blocked)
        pinned = [d for d in dict.fromkeys(request.pinned) if d not in blocked]
        pinned_set = set(pinned)
        keep = np.array([d not in blocked and d not in pinned_set for d in candidates.doc_ids], dtype=bool)
        cands = candidates.take(np.flatnonzero(keep))
        scores = cands.scores.astype(np.float64)
        infos = self.docs.get(cands.doc_ids) if len(cands) else []
        if c.freshness_weight and len(cands):
            fetched = np.array([i.fetched_at if i and i.fetched_at is not None else np.nan for i in infos])
            scores = scores + c.freshness_weight * freshness(fetched, self.now(), c.freshness_half_life_days)
        need_emb = len(cands) > 1 and (c.dedup_threshold <= 1.0 or c.mmr_lambda < 1.0)
        emb = self._embeddings(cands.doc_ids) if need_emb else np.zeros((len(cands), 1), np.float32)
        order = np.lexsort((np.arange(len(cands)), -scores))
        if need_emb and c.dedup_threshold <= 1.0:
            dup = near_duplicates(emb[order], c.dedup_threshold)
            order = order[~dup]
        picks = order[mmr(scores[order], emb[order], c.mmr_lambda, len(order))]
        if c.per_host_cap > 0:
            hosts: dict[str, int] = {}
            capped = []
            for i in picks:
                host = infos[i].host if infos[i] else ""
                if host:
                    if hosts.get(host, 0) >= c.per_host_cap:
                        continue
                    hosts[host] = hosts.get(host, 0) + 1
                capped.append(i)
            picks = np.asarray(capped, dtype=np.int64)
        out = cands.take(picks, scores[picks])
        if pinned:
            out = _prepend_pinned(out, pinned, candidates, self.lookup_ord)
        out = out.take(np.arange(min(k, len(out))))
        out.trace = candidates.trace + [StageTrace(self.name, list(out.doc_ids), out.scores.copy(),
                                                   (time.perf_counter() - t0) * 1000)]
        return out


def _prepend_pinned(out: Candidates, pinned: list[str], candidates: Candidates, lookup_ord) -> Candidates:
    """Pinned documents first, in the order given, scored above every other result."""
    pos = {d: i for i, d in enumerate(candidates.doc_ids)}
    ords, ids = [], []
    for d in pinned:
        o = candidates.ords[pos[d]] if d in pos else (lookup_ord(d) if lookup_ord else None)
        if o is not None:
            ords.append(int(o))
            ids.append(d)
    if not ids:
        return out
    top = float(out.scores.max()) if len(out) else 0.0
    pin_scores = np.asarray([top + len(ids) - i for i in range(len(ids))], np.float32)
    feats = {}
    for name, arr in out.features.items():
        pad = np.full(len(ids), np.nan, dtype=np.float64) if arr.dtype.kind == "f" else np.zeros(len(ids), arr.dtype)
        feats[name] = np.concatenate([pad.astype(arr.dtype), arr])
    return Candidates(np.concatenate([np.asarray(ords, np.int64), out.ords]), ids + out.doc_ids,
                      np.concatenate([pin_scores, out.scores]), feats, out.trace)

"""Features of the recommendation funnel's coarse stage: cheap per (user, candidate item) columns, one
function for LightGBM training and for serving, so the two cannot drift.

Columns (`FEATURES`, in this order):
- ``route_<name>``: each recall route's raw score and ``rank_<name>`` its 0-based rank in the full
  catalogue for this user (ranks compare across routes whose scores have different scales);
- ``fused``: the recall stage's fused score (what chose the candidate);
- ``log_pop``: log(1 + interactions of the item) over the known log;
- ``log_pop_recent``: the same over the 30 days before the request time (trending items);
- ``genre_affinity``: share of the user's history in the item's genres, averaged over the item's genres;
  ``genre_affinity_recent``: the same over the last 10 history items;
- ``item_age_years``: request year minus release year (NaN when unknown);
- ``user_activity``: history length; ``log_hours_since_last``: log(1 + hours since the user's last
  interaction), at the request time;
- sequential transitions (`TRANSITION_FEATURES`; first-order Markov chains as in FPMC, Rendle et al.
  2010, and Fossil, He & McAuley 2016), counted over each user's interaction sequence in the known
  log: ``markov_last`` = log P(candidate | the user's last item), ``markov_recent`` = log of the
  recency-weighted mean of P(candidate | h) over the last `RECENT_ITEMS` history items h (weight
  `TRANSITION_DECAY` per step back), ``cooc_recent`` = the same over co-occurrence counts within
  `COOC_WINDOW` steps in either order, weighted 1 / distance (a local co-occurrence: within a rating
  session the order is partly the log's tie-break, so both orders count). P(b | a) =
  (count(a, b) + `TRANSITION_PRIOR` p(b)) / (count(a, .) + `TRANSITION_PRIOR`), p the add-one
  popularity share: an item never seen with another in the known log falls back to popularity.

The fine stage's final combination reads the same columns for the coarse survivors plus
`FINE_FEATURES`: ``sasrec`` (the SASRec logit), ``sasrec_z`` (its z-score within the user's
survivors) and ``sasrec_rank`` (0-based rank by SASRec among them). The coarse score itself is left
out: on the fine ranker's training users it is an in-sample score of the coarse model (trained on the
same targets), so it would look more trustworthy there than it is at serving.

Everything is computed from what is known before the request (`split.known_sequences` of the split)
and the request time; nothing reads the target or later interactions. The transition counts too: the
rankers' training lists (split "train") read counts of the fold's known part only, dev the train part.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .split import RecDataset, known_sequences

RECENT_DAYS = 30
RECENT_ITEMS = 10
COOC_WINDOW = 5           # co-occurrence counts pairs up to this many steps apart, weighted 1 / steps
TRANSITION_DECAY = 0.8    # weight of the j-th most recent history item: DECAY ** (j - 1)
TRANSITION_PRIOR = 1.0    # pseudo-count of the popularity prior in P(b | a)
TRANSITION_FEATURES = ["markov_last", "markov_recent", "cooc_recent"]
ITEM_FEATURES = ["log_pop", "log_pop_recent", "genre_affinity", "genre_affinity_recent", "item_age_years",
                 "user_activity", "log_hours_since_last"] + TRANSITION_FEATURES


FINE_FEATURES = ["sasrec", "sasrec_z", "sasrec_rank"]


def feature_names(routes: list[str]) -> list[str]:
    """The coarse column order for the given recall routes."""
    return [f"route_{r}" for r in routes] + [f"rank_{r}" for r in routes] + ["fused"] + ITEM_FEATURES


def fine_feature_names(routes: list[str]) -> list[str]:
    """The fine combination's column order: the coarse columns, then `FINE_FEATURES`."""
    return feature_names(routes) + FINE_FEATURES


@dataclass(frozen=True)
class FeatureContext:
    """What the features read besides the request: the known log and the item metadata."""
    item_counts: np.ndarray    # (n_items + 1,) interactions per item in the known log
    log_items: np.ndarray      # (n_log,) item index of every known interaction, ordered by time
    log_ts: np.ndarray         # (n_log,) their timestamps, ascending
    item_genres: np.ndarray    # (n_items + 1, n_genres) bool
    item_year: np.ndarray      # (n_items + 1,) float, nan when unknown
    transitions: sp.csr_matrix  # (n_items + 1, n_items + 1) float64: [a, b] = times b directly followed a
    cooccurrence: sp.csr_matrix  # (n_items + 1, n_items + 1) float64, symmetric: sum of 1 / steps over a
                                 # and b within COOC_WINDOW steps of each other (`cooccurrence_counts`)

    @property
    def n_items(self) -> int:
        return len(self.item_counts) - 1


def build_context(ds: RecDataset, split: str, n_train_targets: int = 1) -> FeatureContext:
    """The feature context of a split: the log known before its targets (see `split.known_sequences`);
    ``split="all"``: the whole log (serving after the last interaction)."""
    if split == "all":
        items, times = ds.sequences, ds.timestamps
    else:
        items, times = known_sequences(ds, split, n_train_targets)
    flat_i = np.concatenate(items) if items else np.zeros(0, np.int64)
    flat_t = np.concatenate(times) if times else np.zeros(0, np.int64)
    order = np.argsort(flat_t, kind="stable")
    counts = np.bincount(flat_i, minlength=ds.n_items + 1)
    return FeatureContext(counts, flat_i[order], flat_t[order], ds.item_genres, ds.item_year,
                          transition_counts(items, ds.n_items, 1), cooccurrence_counts(items, ds.n_items, COOC_WINDOW))


def transition_counts(sequences: Sequence[np.ndarray], n_items: int, window: int = 1) -> sp.csr_matrix:
    """(n_items + 1, n_items + 1) float64 CSR: [a, b] = sum over each sequence's pairs (a at position i,
    b at position i + d), 1 <= d <= window, of 1 / d. window=1: direct successor counts."""
    rows, cols, vals = [], [], []
    for s in sequences:
        for d in range(1, min(window, len(s) - 1) + 1):
            rows.append(s[:-d])
            cols.append(s[d:])
            vals.append(np.full(len(s) - d, 1.0 / d))
    if not rows:
        return sp.csr_matrix((n_items + 1, n_items + 1), dtype=np.float64)
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                         shape=(n_items + 1, n_items + 1), dtype=np.float64)  # duplicates are summed


def cooccurrence_counts(sequences: Sequence[np.ndarray], n_items: int, window: int) -> sp.csr_matrix:
    """`transition_counts` within ``window`` steps, in both orders: symmetric (n_items + 1, n_items + 1)."""
    follows = transition_counts(sequences, n_items, window)
    return (follows + follows.T).tocsr()


def transition_probs(counts: sp.csr_matrix, prior: np.ndarray, sources: np.ndarray,
                     candidates: np.ndarray) -> np.ndarray:
    """Smoothed P(candidate | source) for every source and candidate: (s,) x (c,) -> (s, c) float64,
    (count(a -> b) + TRANSITION_PRIOR prior(b)) / (count(a -> .) + TRANSITION_PRIOR)."""
    rows = counts[sources]                                              # (s, n_items + 1) sparse
    out_total = np.asarray(rows.sum(axis=1)).ravel()                    # (s,)
    hits = rows[:, candidates].toarray()                                # (s, c)
    return (hits + TRANSITION_PRIOR * prior[candidates][None, :]) / (out_total[:, None] + TRANSITION_PRIOR)


def transition_features(ctx: FeatureContext, history: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """The `TRANSITION_FEATURES` columns of one user's candidates: (c,) -> (c, 3) float64 (zeros for an
    empty history: the columns then say nothing)."""
    c = np.asarray(candidates)
    out = np.zeros((len(c), len(TRANSITION_FEATURES)))
    if len(history) == 0:
        return out
    prior = (ctx.item_counts + 1.0) / (ctx.item_counts[1:].sum() + ctx.n_items)  # add-one popularity share
    recent = np.asarray(history[-RECENT_ITEMS:])[::-1]                  # most recent first
    w = TRANSITION_DECAY ** np.arange(len(recent))                      # (r,)
    p_next = transition_probs(ctx.transitions, prior, recent, c)        # (r, c)
    p_cooc = transition_probs(ctx.cooccurrence, prior, recent, c)       # (r, c)
    out[:, 0] = np.log(p_next[0])
    out[:, 1] = np.log(w @ p_next / w.sum())
    out[:, 2] = np.log(w @ p_cooc / w.sum())
    return out


def _year(ts: int) -> float:
    return 1970.0 + ts / (365.2425 * 86400.0)


def user_item_features(ctx: FeatureContext, history: np.ndarray, history_ts: np.ndarray, now: int,
                       candidates: np.ndarray) -> np.ndarray:
    """The `ITEM_FEATURES` columns of one user's candidates: (c,) item indices -> (c, 10) float32."""
    c = np.asarray(candidates)
    lo, hi = np.searchsorted(ctx.log_ts, [now - RECENT_DAYS * 86400, now])
    recent = np.bincount(ctx.log_items[lo:hi], minlength=ctx.n_items + 1)
    g = ctx.item_genres.astype(np.float64)
    cand_g = g[c]                                                   # (c, n_genres)
    n_g = np.maximum(cand_g.sum(1), 1.0)

    def affinity(items: np.ndarray) -> np.ndarray:
        if len(items) == 0:
            return np.zeros(len(c))
        share = g[items].mean(0)                                    # (n_genres,) share of history per genre
        return cand_g @ share / n_g

    out = np.empty((len(c), len(ITEM_FEATURES)), np.float32)
    out[:, 0] = np.log1p(ctx.item_counts[c])
    out[:, 1] = np.log1p(recent[c])
    out[:, 2] = affinity(history)
    out[:, 3] = affinity(history[-RECENT_ITEMS:])
    out[:, 4] = np.floor(_year(now)) - ctx.item_year[c]
    out[:, 5] = len(history)
    out[:, 6] = np.log1p(max(now - int(history_ts[-1]), 0) / 3600.0) if len(history_ts) else np.nan
    out[:, 7:] = transition_features(ctx, history, c)
    return out


def feature_matrix(ctx: FeatureContext, histories: list[np.ndarray], history_ts: list[np.ndarray],
                   now: np.ndarray, candidates: np.ndarray, route_scores: dict[str, np.ndarray],
                   route_ranks: dict[str, np.ndarray], fused: np.ndarray) -> np.ndarray:
    """All features of a batch of users: candidates (n, c) -> (n, c, F) float32, F = len(feature_names).

    route_scores / route_ranks: per route, (n, c) values for the candidates (same route order as
    `feature_names`); fused: (n, c) the recall stage's fused score."""
    n, c = candidates.shape
    routes = list(route_scores)
    out = np.empty((n, c, 2 * len(routes) + 1 + len(ITEM_FEATURES)), np.float32)
    for j, r in enumerate(routes):
        out[:, :, j] = route_scores[r]
        out[:, :, len(routes) + j] = route_ranks[r]
    out[:, :, 2 * len(routes)] = fused
    for u in range(n):
        out[u, :, 2 * len(routes) + 1:] = user_item_features(ctx, histories[u], history_ts[u], int(now[u]),
                                                             candidates[u])
    return out


def fine_feature_matrix(coarse_features: np.ndarray, fine_scores: np.ndarray) -> np.ndarray:
    """Columns of the fine combination: the survivors' coarse features (n, k, F) and the sequence
    model's scores (n, k) -> (n, k, F + 3) float32."""
    fine = np.asarray(fine_scores, np.float64)
    z = (fine - fine.mean(1, keepdims=True)) / (fine.std(1, keepdims=True) + 1e-9)
    rank = np.argsort(np.argsort(-fine, axis=1, kind="stable"), axis=1, kind="stable")
    extra = np.stack([fine, z, rank], axis=2).astype(np.float32)  # (n, k, 3)
    return np.concatenate([coarse_features.astype(np.float32), extra], axis=2)

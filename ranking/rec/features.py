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
  interaction), at the request time.

The fine stage's final combination reads the same columns for the coarse survivors plus
`FINE_FEATURES`: ``sasrec`` (the SASRec logit), ``sasrec_z`` (its z-score within the user's
survivors) and ``sasrec_rank`` (0-based rank by SASRec among them). The coarse score itself is left
out: on the fine ranker's training users it is an in-sample score of the coarse model (trained on the
same targets), so it would look more trustworthy there than it is at serving.

Everything is computed from what is known before the request (`split.known_sequences` of the split)
and the request time; nothing reads the target or later interactions.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .split import RecDataset, known_sequences

RECENT_DAYS = 30
RECENT_ITEMS = 10
ITEM_FEATURES = ["log_pop", "log_pop_recent", "genre_affinity", "genre_affinity_recent", "item_age_years",
                 "user_activity", "log_hours_since_last"]


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
    return FeatureContext(counts, flat_i[order], flat_t[order], ds.item_genres, ds.item_year)


def _year(ts: int) -> float:
    return 1970.0 + ts / (365.2425 * 86400.0)


def user_item_features(ctx: FeatureContext, history: np.ndarray, history_ts: np.ndarray, now: int,
                       candidates: np.ndarray) -> np.ndarray:
    """The `ITEM_FEATURES` columns of one user's candidates: (c,) item indices -> (c, 7) float32."""
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

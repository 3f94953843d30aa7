"""Last stage of the recommendation funnel: business and diversity rules over the fine stage's short
list, deciding the k items a user sees.

Rules, in the order they apply:
1. already-seen filter: items in the user's history never come back;
2. blocked items are removed;
3. popularity damper: relevance minus ``popularity_damping`` x the item's popularity percentile, so the
   long tail gets a chance (novelty) at a bounded cost;
4. genre MMR (Carbonell & Goldstein 1998): greedily pick argmax lambda * relevance - (1 - lambda) *
   max genre-Jaccard similarity to the items already picked; lambda = 1 is pure relevance;
5. per-genre cap: an item is skipped while any of its genres already fills ``max_per_genre`` slots
   (skipped items fill the list at the end if nothing else is left);
6. pinned items take their slots whatever their score.

Relevance is the fine stage's score min-max scaled to [0, 1] within the list, so lambda and the damper
mean the same whatever model produced the scores. Every function is pure over arrays; pass a dict as
``trace`` to record each decision (the dashboard's "why this item" view).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class RerankConfig:
    k: int = 10
    mmr_lambda: float = 1.0           # 1 = relevance only; lower trades accuracy for genre diversity
    popularity_damping: float = 0.0   # 0 = off; subtracted x popularity percentile (0..1) from relevance
    max_per_genre: int | None = None  # None = no cap
    blocked: frozenset[int] = field(default_factory=frozenset)
    pinned: Mapping[int, int] = field(default_factory=dict)  # item index -> 0-based slot


def filter_seen(items: np.ndarray, scores: np.ndarray, history: Sequence[int],
                trace: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Drop candidates the user already interacted with (and padding, index 0)."""
    keep = ~np.isin(items, np.asarray(history)) & (items > 0)
    if trace is not None:
        trace["seen_removed"] = items[~keep].tolist()
    return items[keep], scores[keep]


def filter_blocked(items: np.ndarray, scores: np.ndarray, blocked: Sequence[int],
                   trace: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Drop blocked items (rights, policy, a user's "not interested")."""
    keep = ~np.isin(items, np.fromiter(blocked, np.int64, len(blocked)))
    if trace is not None:
        trace["blocked_removed"] = items[~keep].tolist()
    return items[keep], scores[keep]


def relevance(scores: np.ndarray) -> np.ndarray:
    """Min-max scale scores to [0, 1] within the list (all equal -> all 1)."""
    s = np.asarray(scores, np.float64)
    if len(s) == 0:
        return s
    span = s.max() - s.min()
    return np.ones_like(s) if span <= 0 else (s - s.min()) / span


def popularity_percentile(item_counts: np.ndarray) -> np.ndarray:
    """(n_items + 1,) counts -> percentile in [0, 1] of each item's popularity (1 = most popular)."""
    ranks = np.argsort(np.argsort(item_counts, kind="stable"), kind="stable")
    return ranks / max(len(item_counts) - 1, 1)


def damp_popularity(rel: np.ndarray, items: np.ndarray, pop_pct: np.ndarray, strength: float,
                    trace: dict | None = None) -> np.ndarray:
    """Relevance minus strength x popularity percentile of each item."""
    out = rel - strength * pop_pct[items]
    if trace is not None and strength:
        trace["damped"] = {int(i): round(float(a - b), 4) for i, a, b in zip(items, rel, out)}
    return out


def genre_jaccard(genres: np.ndarray) -> np.ndarray:
    """(n, n_genres) bool -> (n, n) Jaccard similarity of genre sets (0 when both are empty)."""
    g = genres.astype(np.float64)
    inter = g @ g.T
    sizes = g.sum(1)
    union = sizes[:, None] + sizes[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def mmr_select(rel: np.ndarray, genres: np.ndarray, k: int, mmr_lambda: float,
               max_per_genre: int | None = None, trace: dict | None = None) -> np.ndarray:
    """Greedy MMR with an optional per-genre cap; -> positions (into rel) of the chosen items, in order.

    rel: (n,) relevance; genres: (n, n_genres) bool of the same items."""
    n = len(rel)
    sim = genre_jaccard(genres)
    chosen: list[int] = []
    skipped: list[int] = []
    counts = np.zeros(genres.shape[1], np.int64)
    max_sim = np.zeros(n)
    left = np.ones(n, bool)
    steps = []
    while len(chosen) < k and left.any():
        value = np.where(left, mmr_lambda * rel - (1.0 - mmr_lambda) * max_sim, -np.inf)
        j = int(np.argmax(value))
        left[j] = False
        if max_per_genre is not None and (counts[genres[j]] >= max_per_genre).any():
            skipped.append(j)
            continue
        chosen.append(j)
        counts += genres[j]
        steps.append((j, float(rel[j]), float(max_sim[j]), float(value[j])))
        max_sim = np.maximum(max_sim, sim[j])
    fill = skipped[:k - len(chosen)]  # the cap left too few: relax it rather than return a short list
    chosen += fill
    if trace is not None:
        trace["mmr"] = steps
        trace["genre_cap_skipped"] = skipped
        trace["genre_cap_relaxed"] = fill
    return np.array(chosen, np.int64)


def place_pinned(items: np.ndarray, pinned: Mapping[int, int], k: int,
                 trace: dict | None = None) -> np.ndarray:
    """Put each pinned item at its slot (0-based), shifting the others down; the list keeps k items."""
    rest = [int(i) for i in items if int(i) not in pinned]
    out = rest
    for item, slot in sorted(pinned.items(), key=lambda kv: kv[1]):
        out.insert(min(slot, len(out)), int(item))
    if trace is not None:
        trace["pinned"] = {int(i): int(s) for i, s in pinned.items()}
    return np.array(out[:k], np.int64)


def rerank(items: np.ndarray, scores: np.ndarray, history: Sequence[int], item_genres: np.ndarray,
           pop_pct: np.ndarray, config: RerankConfig = RerankConfig(),
           trace: dict | None = None) -> np.ndarray:
    """One user's candidates (items (n,), scores (n,)) -> the k item indices to show, best first.

    item_genres: (n_items + 1, n_genres) bool; pop_pct: `popularity_percentile` of the item counts."""
    items = np.asarray(items, np.int64)
    scores = np.asarray(scores, np.float64)
    items, scores = filter_seen(items, scores, history, trace)
    if config.blocked:
        items, scores = filter_blocked(items, scores, sorted(config.blocked), trace)
    rel = relevance(scores)
    if config.popularity_damping:
        rel = damp_popularity(rel, items, pop_pct, config.popularity_damping, trace)
    if config.mmr_lambda >= 1.0 and config.max_per_genre is None:
        order = np.argsort(-rel, kind="stable")[:config.k]  # pure relevance: skip the O(k n) loop
    else:
        order = mmr_select(rel, item_genres[items], config.k, config.mmr_lambda, config.max_per_genre, trace)
    out = items[order]
    if config.pinned:
        out = place_pinned(out, config.pinned, config.k, trace)
    return out

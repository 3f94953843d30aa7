"""Offline metrics of the recommendation funnel: accuracy of the held-out target (NDCG@k, HR@k,
Recall@k) and beyond-accuracy properties of the lists (coverage, genre diversity, novelty).

Every function reads top-k lists, ``(n_users, k)`` item indices best first, rather than full score
matrices: the funnel's later stages only produce short lists, and the lists are what a user sees.
With one held-out target per user, Recall@k equals HR@k; both are kept because the benchmark reports
Recall@50 for recall stages and HR@10 for final lists.
"""
from __future__ import annotations

import numpy as np


def target_ranks(topk: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """0-based position of each target in its list, or -1 when absent. topk: (n, k); targets: (n,)."""
    hit = topk == np.asarray(targets)[:, None]  # (n, k)
    return np.where(hit.any(axis=1), hit.argmax(axis=1), -1)


def ndcg_at_k(topk: np.ndarray, targets: np.ndarray, k: int = 10) -> float:
    """Mean NDCG@k with one relevant item: 1 / log2(rank + 2) when the target is in the top k, else 0
    (the ideal DCG of a single relevant item is 1)."""
    r = target_ranks(topk[:, :k], targets)
    gains = np.where(r >= 0, 1.0 / np.log2(np.maximum(r, 0) + 2.0), 0.0)
    return float(gains.mean()) if len(gains) else 0.0


def hit_rate_at_k(topk: np.ndarray, targets: np.ndarray, k: int = 10) -> float:
    """Share of users whose target is in their top k."""
    r = target_ranks(topk[:, :k], targets)
    return float((r >= 0).mean()) if len(r) else 0.0


def recall_at_k(topk: np.ndarray, targets: np.ndarray, k: int = 50) -> float:
    """Share of relevant items retrieved in the top k; with one target per user this is HR@k."""
    return hit_rate_at_k(topk, targets, k)


def coverage(topk: np.ndarray, n_items: int, k: int = 10) -> float:
    """Share of the catalogue (items 1..n_items) that appears in at least one user's top k."""
    items = np.unique(topk[:, :k])
    return float(np.count_nonzero(items > 0) / n_items)


def intra_list_diversity(topk: np.ndarray, item_genres: np.ndarray, k: int = 10) -> float:
    """Mean over users of the mean pairwise Jaccard distance between the genre sets of their top k.

    item_genres: (n_items + 1, n_genres) bool. Two items without any genre are at distance 0 (nothing
    tells them apart).
    """
    g = item_genres[topk[:, :k]].astype(np.float64)  # (n, k, n_genres)
    inter = np.einsum("nig,njg->nij", g, g)          # (n, k, k) |A & B|
    sizes = g.sum(axis=2)                            # (n, k)
    union = sizes[:, :, None] + sizes[:, None, :] - inter
    dist = np.where(union > 0, 1.0 - inter / np.maximum(union, 1e-12), 0.0)
    kk = g.shape[1]
    if kk < 2:
        return 0.0
    iu = np.triu_indices(kk, 1)
    return float(dist[:, iu[0], iu[1]].mean())


def novelty(topk: np.ndarray, item_counts: np.ndarray, k: int = 10) -> float:
    """Mean self-information -log2(p_i) of recommended items, p_i an item's share of the interactions.

    item_counts: (n_items + 1,) interaction counts of the known (training) log. Add-one smoothing keeps
    never-seen items finite: p_i = (count_i + 1) / (total + n_items).
    """
    counts = np.asarray(item_counts, np.float64)
    p = (counts + 1.0) / (counts[1:].sum() + len(counts) - 1)
    return float((-np.log2(p[topk[:, :k]])).mean())


def evaluate_lists(topk: np.ndarray, targets: np.ndarray, item_genres: np.ndarray,
                   item_counts: np.ndarray, k: int = 10, recall_k: int = 50) -> dict[str, float]:
    """All list metrics at once; ``recall@{recall_k}`` is NaN when the lists are shorter than recall_k."""
    n_items = len(item_counts) - 1
    out = {f"ndcg@{k}": ndcg_at_k(topk, targets, k), f"hr@{k}": hit_rate_at_k(topk, targets, k),
           f"recall@{recall_k}": recall_at_k(topk, targets, recall_k) if topk.shape[1] >= recall_k else float("nan"),
           "coverage": coverage(topk, n_items, k),
           "diversity": intra_list_diversity(topk, item_genres, k),
           "novelty": novelty(topk, item_counts, k)}
    return out


def item_counts(histories: list[np.ndarray], n_items: int) -> np.ndarray:
    """(n_items + 1,) int64 interactions per item over the given histories."""
    if not histories:
        return np.zeros(n_items + 1, np.int64)
    return np.bincount(np.concatenate(histories), minlength=n_items + 1).astype(np.int64)

"""Item-item co-occurrence counts: the statistic ItemKNN's similarities are computed from (and EASE's
Gram matrix off its diagonal), defined once here for the local route and for the Spark job
(`funnel.pipelines.cooccurrence_job`, ``funnel pipeline cooccurrence``), which must agree exactly.

Definitions, over per-user item-index arrays (``RecDataset.sequences`` or a part of them):
- ``item_users[i]``: the number of users who interacted with item i at least once;
- ``pairs[i, j]`` (i != j): the number of users who interacted with both i and j. A user-item pair
  counts once however often it repeats; the matrix is symmetric with a zero diagonal, pairs counted
  by fewer than ``min_count`` users are dropped.

``drop_last(sequences, n)`` is the job's ``holdout_last``: a user's last n interactions (in the
split's order) are held out unless she has no more than n, in which case all are kept; with n = 2 it
gives exactly the train part of the leave-last-out split (``split.known_sequences(ds, "dev")``).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from .movielens import RecDataError


@dataclass(frozen=True)
class Cooccurrence:
    """Co-occurrence counts over items 1..n_items (index 0 is padding and stays empty)."""
    pairs: sp.csr_matrix     # (n_items + 1, n_items + 1) int64, symmetric, zero diagonal
    item_users: np.ndarray   # (n_items + 1,) int64 users per item

    @property
    def n_items(self) -> int:
        return len(self.item_users) - 1

    def gram(self) -> np.ndarray:
        """The dense (n_items + 1, n_items + 1) float64 matrix X^T X of the binary user-item matrix X:
        the pair counts with the per-item user counts on the diagonal."""
        g = self.pairs.toarray().astype(np.float64)
        g[np.diag_indices_from(g)] = self.item_users
        return g


def interaction_matrix(histories: Sequence[np.ndarray], n_items: int) -> sp.csr_matrix:
    """Binary (n_users, n_items + 1) float32 CSR of who interacted with what (repeats count once)."""
    rows = np.repeat(np.arange(len(histories)), [len(h) for h in histories])
    cols = np.concatenate(histories) if len(rows) else np.zeros(0, np.int64)
    x = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(len(histories), n_items + 1))
    x.data[:] = 1.0  # duplicates were summed
    return x


def cooccurrence_counts(histories: Sequence[np.ndarray], n_items: int, *, min_count: int = 1) -> Cooccurrence:
    """Count, for every item and every pair of items, the users who interacted with them."""
    x = interaction_matrix(histories, n_items).astype(np.int64)  # (n_users, n_items + 1) binary
    g = (x.T @ x).tocoo()  # (n_items + 1, n_items + 1): integer counts, exact at any size
    item_users = np.zeros(n_items + 1, np.int64)
    on_diag = g.row == g.col
    item_users[g.row[on_diag]] = g.data[on_diag]
    keep = ~on_diag & (g.data >= min_count)
    pairs = sp.csr_matrix((g.data[keep], (g.row[keep], g.col[keep])), shape=g.shape)
    pairs.sort_indices()
    return Cooccurrence(pairs, item_users)


def drop_last(sequences: Sequence[np.ndarray], n: int) -> list[np.ndarray]:
    """Each sequence without its last ``n`` items, or whole when it holds no more than ``n``."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    return [s if len(s) <= n else s[:len(s) - n] for s in sequences]


def cooccurrence_from_ids(item_a: Sequence[str], item_b: Sequence[str], count: Sequence[int],
                          items: Sequence[str], users: Sequence[int], item_ids: Sequence[str]) -> Cooccurrence:
    """Counts keyed by item id (the Spark job's rows) -> `Cooccurrence` over ``item_ids``' indices
    (``RecDataset.item_ids``, index 0 padding). Each pair may come in one order or both, not twice."""
    index = {str(iid): i for i, iid in enumerate(item_ids) if i > 0}
    n = len(item_ids)

    def lookup(ids, what):
        try:
            return np.array([index[str(i)] for i in ids], dtype=np.int64)
        except KeyError as e:
            raise RecDataError(f"co-occurrence {what}: item id {e.args[0]!r} is not in the dataset's items") from None

    a, b = lookup(item_a, "pairs"), lookup(item_b, "pairs")
    c = np.asarray(count, dtype=np.int64)
    if np.any(a == b):
        raise RecDataError("co-occurrence pairs: an item paired with itself")
    upper = sp.coo_matrix((c, (np.minimum(a, b), np.maximum(a, b))), shape=(n, n)).tocsr()
    if upper.nnz != len(c):
        raise RecDataError("co-occurrence pairs: a pair listed twice")
    item_users = np.zeros(n, np.int64)
    item_users[lookup(items, "items")] = np.asarray(users, dtype=np.int64)
    g = (upper + upper.T).tocsr()
    g.sort_indices()
    return Cooccurrence(g, item_users)


def load_cooccurrence(path: str | Path, item_ids: Sequence[str]) -> Cooccurrence:
    """Read the Spark job's output folder (``pairs.parquet``, ``items.parquet``) over ``item_ids``."""
    import pyarrow.parquet as pq

    path = Path(path)
    for name in ("pairs.parquet", "items.parquet"):
        if not (path / name).exists():
            raise RecDataError(f"{path / name} not found: run `funnel pipeline cooccurrence` first")
    pairs = pq.read_table(path / "pairs.parquet", columns=["item_a", "item_b", "count"])
    items = pq.read_table(path / "items.parquet", columns=["item_id", "users"])
    return cooccurrence_from_ids(pairs.column("item_a").to_pylist(), pairs.column("item_b").to_pylist(),
                                 pairs.column("count").to_numpy(), items.column("item_id").to_pylist(),
                                 items.column("users").to_numpy(), item_ids)

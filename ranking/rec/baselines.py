"""Non-sequential recommenders: popularity, ItemKNN, EASE (and `implicit`'s ALS and BPR). They are the
yardsticks of the benchmark and, fitted once, two of them (EASE, ItemKNN) are recall routes of the funnel.

Every model has the same two calls: ``fit(histories, n_items)`` on per-user item-index arrays, and
``score(histories) -> (n_users, n_items + 1)`` for any histories, so the same fitted model scores dev
(train histories) and test (train + dev histories) without refitting. Column 0 is padding; callers
mask it and the seen items with `split.mask_seen`.

Why these three: popularity is the floor every model must clear; ItemKNN (cosine on co-occurrence)
is the classic item-to-item route; EASE (Steck 2019, a closed-form item-item regression) is among the
strongest non-neural baselines on MovieLens and costs one (n_items x n_items) inverse.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .cooccurrence import Cooccurrence, cooccurrence_counts, interaction_matrix
from .metrics import ndcg_at_k
from .split import SplitView, rank_full


class _NpyState:
    """Save/load of a fitted baseline as one ``.npy`` array (its ``_state`` attribute) plus its
    constructor arguments, which the caller records (e.g. in the funnel's JSON)."""
    _state = ""

    def save_npy(self, path: str | Path) -> None:
        np.save(Path(path), getattr(self, self._state), allow_pickle=False)

    @classmethod
    def load_npy(cls, path: str | Path, **params):
        model = cls(**params)
        arr = np.load(Path(path), allow_pickle=False)
        setattr(model, cls._state, arr)
        model.n_items = arr.shape[-1] - 1
        return model


class Popularity(_NpyState):
    """Scores every item by its number of interactions in the fitted log, the same for every user."""
    name = "popularity"
    _state = "counts"

    def fit(self, histories: Sequence[np.ndarray], n_items: int) -> "Popularity":
        self.counts = np.bincount(np.concatenate(histories), minlength=n_items + 1).astype(np.float32)
        self.n_items = n_items
        return self

    def score(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        return np.broadcast_to(self.counts, (len(histories), len(self.counts))).copy()


class ItemKNN(_NpyState):
    """Item-based nearest neighbours: cosine similarity of item co-occurrence columns, kept to the
    ``neighbors`` most similar items per item; a user's score is the sum of similarities to her items.

    ``shrink`` damps similarities resting on few co-occurrences (s_ij = c_ij / (sqrt(n_i n_j) + shrink)).
    """
    name = "itemknn"
    _state = "sim"

    def __init__(self, neighbors: int = 100, shrink: float = 10.0):
        self.neighbors = neighbors
        self.shrink = shrink

    def fit(self, histories: Sequence[np.ndarray], n_items: int) -> "ItemKNN":
        return self.fit_counts(cooccurrence_counts(histories, n_items))

    def fit_counts(self, counts: Cooccurrence) -> "ItemKNN":
        """Fit from co-occurrence counts computed elsewhere, e.g. by the Spark job
        (``ItemKNN(n, s).fit_counts(load_cooccurrence(path, ds.item_ids))``): the same model as `fit`."""
        co = counts.gram()  # (n_items + 1, n_items + 1) float64, per-item user counts on the diagonal
        norms = np.sqrt(np.diag(co))
        sim = co / (np.outer(norms, norms) + self.shrink + 1e-12)
        np.fill_diagonal(sim, 0.0)
        if self.neighbors < sim.shape[0]:
            # keep the top `neighbors` entries of each column (the items most similar to item j)
            cut = np.partition(sim, -self.neighbors, axis=0)[-self.neighbors]  # (n_items + 1,)
            sim[sim < cut[None, :]] = 0.0
        self.sim = sim.astype(np.float32)
        self.n_items = counts.n_items
        return self

    def score(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        return np.asarray(interaction_matrix(histories, self.n_items) @ self.sim)


class EASE(_NpyState):
    """Embarrassingly Shallow Autoencoder (Steck, WWW 2019): B = argmin ||X - XB||^2 + l2 ||B||^2 with
    diag(B) = 0, solved in closed form: P = (X^T X + l2 I)^-1, B = -P / diag(P), diag(B) = 0."""
    name = "ease"
    _state = "b"

    def __init__(self, l2: float = 200.0):
        self.l2 = l2

    def fit(self, histories: Sequence[np.ndarray], n_items: int) -> "EASE":
        x = interaction_matrix(histories, n_items)
        g = (x.T @ x).toarray().astype(np.float64)  # (n_items + 1, n_items + 1) Gram matrix
        g[np.diag_indices_from(g)] += self.l2
        p = np.linalg.inv(g)
        b = -p / np.diag(p)[None, :]
        np.fill_diagonal(b, 0.0)
        self.b = b.astype(np.float32)
        self.n_items = n_items
        return self

    def score(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        return np.asarray(interaction_matrix(histories, self.n_items) @ self.b)


class ImplicitMF:
    """`implicit`'s ALS or BPR behind the same fit/score calls.

    ALS folds in any history (``recalculate_user``), so it scores test histories that hold the dev item.
    BPR cannot fold in: ``score`` uses the fitted user factors, so the histories must be those of the
    fitted users, in the same order (the dev protocol; at test the dev item is then ignored).
    """

    def __init__(self, kind: str = "als", factors: int = 64, regularization: float = 0.01,
                 iterations: int = 30, learning_rate: float = 0.01, alpha: float = 1.0,
                 num_threads: int = 0, seed: int = 0):
        if kind not in ("als", "bpr"):
            raise ValueError(f"kind must be 'als' or 'bpr', got {kind!r}")
        self.kind, self.name = kind, f"implicit-{kind}"
        self.params = dict(factors=factors, regularization=regularization, iterations=iterations,
                           num_threads=num_threads, random_state=seed)
        if kind == "als":
            self.params["alpha"] = alpha
        else:
            self.params["learning_rate"] = learning_rate

    def fit(self, histories: Sequence[np.ndarray], n_items: int) -> "ImplicitMF":
        try:
            import implicit
        except ImportError as e:
            raise ImportError("the ALS/BPR baselines need implicit: pip install implicit==0.7.3") from e
        cls = implicit.cpu.als.AlternatingLeastSquares if self.kind == "als" else implicit.cpu.bpr.BayesianPersonalizedRanking
        self.model = cls(**self.params)
        self.n_items = n_items
        x = interaction_matrix(histories, n_items)
        try:  # implicit runs its own threads: a multi-threaded BLAS under them oversubscribes the cores
            from threadpoolctl import threadpool_limits
            with threadpool_limits(1, "blas"):
                self.model.fit(x, show_progress=False)
        except ImportError:
            self.model.fit(x, show_progress=False)
        return self

    def score(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        m = self.model
        if self.kind == "als":
            x = interaction_matrix(histories, self.n_items)
            users = m.recalculate_user(np.arange(len(histories)), x)  # (n, factors)
        else:
            if len(histories) != m.user_factors.shape[0]:
                raise ValueError(f"BPR scores only its {m.user_factors.shape[0]} fitted users, got {len(histories)} "
                                 f"histories; pass the fitted users' histories in fit order")
            users = m.user_factors
        return np.asarray(users @ m.item_factors.T, dtype=np.float32)


def select_on_dev(make: Callable[[object], object], grid: Sequence, fit_histories: Sequence[np.ndarray],
                  n_items: int, view: SplitView, k: int = 10) -> tuple[object, object, dict]:
    """Fit ``make(param)`` for each param of ``grid`` and keep the best NDCG@k on ``view``.

    Returns (best model, best param, {param: ndcg}). Only ever pass the dev view (or a view carved
    from train): choosing on test would leak the answer into the reported figure.
    """
    best, best_p, table = None, None, {}
    for p in grid:
        model = make(p).fit(fit_histories, n_items)
        topk = rank_full(model.score(view.histories), view.histories, k)
        table[p] = ndcg_at_k(topk, view.targets, k)
        if best is None or table[p] > table[best_p]:
            best, best_p = model, p
    return best, best_p, table

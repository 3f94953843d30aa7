"""The recommendation funnel as search's stages: recall -> coarse -> fine -> rerank, each
`rank(request, candidates, k) -> candidates` (`funnel.ranking.serving.stages`), fed one user per request
and feeding `service.RecService` (the API, the dashboard, `funnel recommend`).

Each class wraps one of `funnel`'s batched stage functions for a batch of one user, so the batched path
(`funnel.recommend`, evaluation and the rankers' training lists) and this one run the same code. The
request carries the user's history as item ids (`Request.history`), their times (`history_ts`), the
request time (`now`) and the user id (`user`: features of a known user, else unknown); candidates carry
item indices as ``ords`` and item ids as ``doc_ids``. What a later stage reads travels as named
per-candidate features: recall's per-route scores and catalogue ranks (``route_<r>``, ``rank_<r>``, the
coarse columns' names), then coarse's columns (`features.feature_names`), which the fine ranker reads.
Scores keep the batched functions' dtype (float64), so both paths give the same numbers. Every stage
appends a `StageTrace`; rerank's holds the rule decisions of `rerank.rerank` (item indices) as ``detail``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np

from funnel.core.errors import InputError
from funnel.ranking.serving.stages import Candidates, Request, Stage, StageTrace

from .features import feature_names
from .funnel import Batch, Funnel, RecallOutput, coarse_features, coarse_stage, fine_stage, recall_stage, rerank_stage
from .funnel import Candidates as BatchCandidates
from .rerank import popularity_percentile
from .split import RecDataset


@dataclass(frozen=True)
class Catalog:
    """Item ids <-> indices and user ids -> indices of the log a funnel serves, built once."""
    item_ids: np.ndarray        # (n_items + 1,) str; index 0 is padding
    items: dict[str, int]
    users: dict[str, int]

    @classmethod
    def of(cls, ds: RecDataset) -> "Catalog":
        return cls(ds.item_ids, ds.item_index(), {u: i for i, u in enumerate(ds.user_ids)})

    def batch(self, request: Request) -> Batch:
        """The request as a batch of one user (history item indices, their times, user index or -1, now).
        Every stage maps it again rather than caching it anywhere: the stages stay stateless and shared by
        threads, and a history's look-ups cost microseconds next to the models."""
        if not request.history or request.now is None:
            raise InputError("a recommendation request needs a history (item ids, oldest first) and `now`")
        try:
            seq = np.fromiter((self.items[i] for i in request.history), np.int64, len(request.history))
        except KeyError as e:
            raise InputError(f"history: unknown item id {e.args[0]!r}") from None
        ts = (np.full(len(seq), request.now, np.int64) if request.history_ts is None
              else np.asarray(request.history_ts, np.int64))
        if len(ts) != len(seq):
            raise InputError(f"history_ts: expected {len(seq)} timestamps (one per history item), got {len(ts)}")
        user = -1 if request.user is None else self.users.get(str(request.user), -1)
        return Batch([seq], [ts], np.array([user], np.int64), np.array([request.now], np.int64))

    def candidates(self, items: np.ndarray, scores: np.ndarray, features: dict, prior: Candidates,
                   stage: str, t0: float, detail: dict | None = None) -> Candidates:
        """One user's row (items (n,), scores (n,)) as candidates, with this stage's trace appended."""
        ids = self.item_ids[items].tolist()
        trace = StageTrace(stage, ids, scores, 1e3 * (time.perf_counter() - t0), detail)
        return Candidates(items, ids, scores, features, prior.trace + [trace])


def _rows(cands: Candidates, names: list[str] | None = None) -> BatchCandidates:
    """Candidates of one user -> the batched functions' (1, n) rows (and (1, n, F) columns of ``names``)."""
    X = None if names is None else np.stack([cands.features[n] for n in names], axis=1)[None]
    return BatchCandidates(cands.ords[None], cands.scores[None], X)


class RecRecall:
    """Every route scores the catalogue, fused by reciprocal rank -> the top k unseen items."""
    name = "recall"

    def __init__(self, funnel: Funnel, catalog: Catalog):
        self.funnel, self.catalog = funnel, catalog

    def rank(self, request: Request, candidates: Candidates, k: int) -> Candidates:
        t0 = time.perf_counter()
        cfg = self.funnel.config
        out = recall_stage(self.funnel.routes, self.catalog.batch(request),
                           cfg if k == cfg.recall_k else replace(cfg, recall_k=k))
        feats = {**{f"route_{r}": s[0] for r, s in out.route_scores.items()},
                 **{f"rank_{r}": rk[0] for r, rk in out.route_ranks.items()}}
        return self.catalog.candidates(out.candidates.items[0], out.candidates.scores[0], feats, candidates,
                                       self.name, t0)


class RecCoarse:
    """LightGBM over the recall candidates' columns (routes, fused score, user x item features) -> top k."""
    name = "coarse"

    def __init__(self, funnel: Funnel, catalog: Catalog):
        self.funnel, self.catalog = funnel, catalog
        self.columns = feature_names(list(funnel.routes))

    def rank(self, request: Request, candidates: Candidates, k: int) -> Candidates:
        t0 = time.perf_counter()
        batch = self.catalog.batch(request)
        f = candidates.features
        rec = RecallOutput(_rows(candidates), {r: f[f"route_{r}"][None] for r in self.funnel.routes},
                           {r: f[f"rank_{r}"][None] for r in self.funnel.routes})
        out = coarse_stage(self.funnel.coarse, coarse_features(self.funnel.context, batch, rec), rec, k)
        feats = {name: out.features[0, :, j] for j, name in enumerate(self.columns)}  # (k,) each
        return self.catalog.candidates(out.items[0], out.scores[0], feats, candidates, self.name, t0)


class RecFine:
    """SASRec scores the survivors, combined with their coarse columns by the fine LightGBM -> top k."""
    name = "fine"

    def __init__(self, funnel: Funnel, catalog: Catalog):
        self.funnel, self.catalog = funnel, catalog
        self.columns = feature_names(list(funnel.routes)) if funnel.coarse is not None else None

    def rank(self, request: Request, candidates: Candidates, k: int) -> Candidates:
        t0 = time.perf_counter()
        fn = self.funnel
        out = fine_stage(fn.fine, self.catalog.batch(request), _rows(candidates, self.columns), fn.fine_ranker,
                         fn.config.coarse_weight)
        return self.catalog.candidates(out.items[0, :k], out.scores[0, :k], {}, candidates, self.name, t0)


class RecRerank:
    """The rules (seen, blocked, popularity damping, genre MMR and cap, pinned) -> the k items to show."""
    name = "rerank"

    def __init__(self, funnel: Funnel, catalog: Catalog):
        self.funnel, self.catalog = funnel, catalog
        self.pop_pct = popularity_percentile(funnel.context.item_counts)  # (n_items + 1,) once, not per request

    def rank(self, request: Request, candidates: Candidates, k: int) -> Candidates:
        t0 = time.perf_counter()
        rules = self.funnel.config.rerank
        decisions: list[dict] = []
        out = rerank_stage(self.catalog.batch(request), _rows(candidates), self.funnel.context.item_genres,
                           self.pop_pct, rules if k == rules.k else replace(rules, k=k), decisions)
        keep = out.items[0] > 0  # a list shorter than k is padded with item 0
        return self.catalog.candidates(out.items[0][keep], out.scores[0][keep], {}, candidates, self.name, t0,
                                       decisions[0])


def rec_stages(funnel: Funnel, ds: RecDataset) -> list[tuple[Stage, int]]:
    """The funnel's stages with the candidates each keeps, for `serving.stages.run_stages`; a stage the
    funnel lacks is left out, as `funnel.recommend` skips it. ``ds``: the log the funnel serves."""
    cfg, catalog = funnel.config, Catalog.of(ds)
    stages: list[tuple[Stage, int]] = [(RecRecall(funnel, catalog), cfg.recall_k)]
    if funnel.coarse is not None:
        stages.append((RecCoarse(funnel, catalog), cfg.coarse_k))
    if funnel.fine:
        stages.append((RecFine(funnel, catalog), stages[-1][1]))  # re-sorts every survivor
    stages.append((RecRerank(funnel, catalog), cfg.rerank.k))
    return stages

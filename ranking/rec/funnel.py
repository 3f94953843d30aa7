"""The recommendation funnel, end to end and free of I/O: recall (fused routes, ~200 items) -> coarse
LightGBM (~50) -> fine SASRec (scores the 50, combined with the coarse columns by a second LightGBM)
-> rerank rules -> the 10 items a user sees.

Why a funnel: each stage can afford a costlier model on fewer items. The routes score the whole
catalogue with one product each; LightGBM reads a dozen cheap columns per candidate; SASRec runs a
transformer per user and reads only the coarse survivors; the rules see ten items.

Every stage has the shape ``stage(batch, candidates) -> candidates`` where ``candidates`` is a
`Candidates` (items (n, k), scores (n, k)); `recommend` is the loop over stages and records the
wall time of each. `evaluate_funnel` runs it user by user (the serving shape) and reports per-stage
quality and latency. Models are fitted by `build.fit_funnel` (the one recipe; it also builds the
rankers' training lists with `coarse_examples` / `fine_examples` below, through the serving code);
this module only wires them.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from .coarse import LambdaMartRanker
from .features import FeatureContext, feature_matrix, fine_feature_matrix
from .metrics import evaluate_lists, recall_at_k
from .rerank import RerankConfig, popularity_percentile, rerank
from .split import SplitView, mask_seen, top_k

# A recall route: (histories, user indices) -> (n, n_items + 1) scores of the whole catalogue.
Route = Callable[[list[np.ndarray], np.ndarray], np.ndarray]


@dataclass(frozen=True)
class FunnelConfig:
    recall_k: int = 200
    coarse_k: int = 50
    rrf_k: float = 60.0                                   # reciprocal-rank fusion constant (Cormack et al. 2009)
    route_weights: Mapping[str, float] = field(default_factory=dict)  # missing route -> 1.0
    coarse_weight: float = 0.0    # without a fine ranker: score = z(fine) + coarse_weight * z(coarse), z per user
    rerank: RerankConfig = RerankConfig()


@dataclass
class Batch:
    """Requests of n users: their histories, dataset user indices (for user features) and request times."""
    histories: list[np.ndarray]
    history_ts: list[np.ndarray]
    users: np.ndarray
    now: np.ndarray

    @classmethod
    def from_view(cls, view: SplitView, rows: Sequence[int] | None = None) -> "Batch":
        rows = np.arange(len(view)) if rows is None else np.asarray(rows)
        return cls([view.histories[i] for i in rows], [view.history_ts[i] for i in rows], view.users[rows],
                   view.target_ts[rows])


@dataclass
class Candidates:
    items: np.ndarray                    # (n, k) item indices, best first
    scores: np.ndarray                   # (n, k) the stage's scores
    features: np.ndarray | None = None   # (n, k, F) the coarse columns, carried for the fine stage


@dataclass
class Funnel:
    """Fitted pieces of the funnel. ``fine`` holds one or more SASRec models whose logits are averaged
    (several seeds: an ensemble); ``fine_ranker`` combines them with the coarse columns (else the
    ``coarse_weight`` blend). An empty ``fine`` skips the stage, as does ``coarse=None``."""
    routes: dict[str, Route]
    context: FeatureContext
    coarse: LambdaMartRanker | None
    fine: Sequence = ()
    fine_ranker: LambdaMartRanker | None = None
    config: FunnelConfig = FunnelConfig()


# ---------------------------------------------------------------- stages

@dataclass
class RecallOutput:
    candidates: Candidates
    route_scores: dict[str, np.ndarray]  # per route (n, recall_k) scores of the candidates
    route_ranks: dict[str, np.ndarray]   # per route (n, recall_k) 0-based catalogue ranks


def full_ranks(scores: np.ndarray) -> np.ndarray:
    """(n, m) masked scores -> (n, m) 0-based rank of each column (ties by column index)."""
    order = np.argsort(-scores, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(scores.shape[1])[None, :].repeat(len(scores), 0), axis=1)
    return ranks


def fuse_rrf(ranks: Mapping[str, np.ndarray], weights: Mapping[str, float], k: float) -> np.ndarray:
    """Weighted reciprocal-rank fusion: sum over routes of w_r / (k + rank_r + 1)."""
    return sum(weights.get(r, 1.0) / (k + rk + 1.0) for r, rk in ranks.items())


def recall_stage(routes: Mapping[str, Route], batch: Batch, config: FunnelConfig) -> RecallOutput:
    """Score the catalogue with every route, fuse by RRF, keep the top ``recall_k`` unseen items (fewer
    when the longest history leaves fewer unseen items, so that every kept candidate is unseen)."""
    full = {name: mask_seen(np.asarray(route(batch.histories, batch.users), np.float64).copy(), batch.histories)
            for name, route in routes.items()}
    ranks = {name: full_ranks(s) for name, s in full.items()}
    fused = fuse_rrf(ranks, config.route_weights, config.rrf_k)     # (n, n_items + 1)
    mask_seen(fused, batch.histories)
    n_items = fused.shape[1] - 1
    k = min(config.recall_k, n_items - max((len(np.unique(h)) for h in batch.histories), default=0))
    items = top_k(fused, k)                                           # (n, k)
    take = lambda a: np.take_along_axis(a, items, 1)
    return RecallOutput(Candidates(items, take(fused)), {r: take(s) for r, s in full.items()},
                        {r: take(rk) for r, rk in ranks.items()})


def coarse_features(ctx: FeatureContext, batch: Batch, rec: RecallOutput) -> np.ndarray:
    """(n, recall_k, F) coarse columns of the recall candidates."""
    return feature_matrix(ctx, batch.histories, batch.history_ts, batch.now, rec.candidates.items,
                          rec.route_scores, rec.route_ranks, rec.candidates.scores)


def coarse_stage(coarse: LambdaMartRanker, X: np.ndarray, rec: RecallOutput, k: int) -> Candidates:
    """LightGBM over the recall candidates' columns X -> the top k, carrying their columns."""
    items, scores, rows = coarse.rank(X, rec.candidates.items, k)
    return Candidates(items, scores, np.take_along_axis(X, rows[:, :, None], 1))


def _zscore(s: np.ndarray) -> np.ndarray:
    s = np.asarray(s, np.float64)
    return (s - s.mean(1, keepdims=True)) / (s.std(1, keepdims=True) + 1e-9)


def fine_scores(models: Sequence, batch: Batch, cands: Candidates) -> np.ndarray:
    """(n, k) mean SASRec logit of each candidate over the models."""
    return np.mean([m.score_candidates(batch.histories, cands.items) for m in models], axis=0)


def fine_stage(models: Sequence, batch: Batch, cands: Candidates, ranker: LambdaMartRanker | None = None,
               coarse_weight: float = 0.0) -> Candidates:
    """Score the candidates with SASRec, combine with the coarse stage (the fine ranker over the coarse
    columns + SASRec columns, or else a z-score blend), and re-sort."""
    fine = fine_scores(models, batch, cands)
    if ranker is not None:
        if cands.features is None:
            raise ValueError("the fine ranker reads the coarse columns: run the coarse stage first")
        score = ranker.predict(fine_feature_matrix(cands.features, fine)).astype(np.float64)
    elif coarse_weight:
        score = _zscore(fine) + coarse_weight * _zscore(cands.scores)
    else:
        score = fine
    order = np.argsort(-score, axis=1, kind="stable")
    return Candidates(np.take_along_axis(cands.items, order, 1), np.take_along_axis(score, order, 1))


def rerank_stage(batch: Batch, cands: Candidates, item_genres: np.ndarray, pop_pct: np.ndarray,
                 config: RerankConfig, traces: list | None = None) -> Candidates:
    """Apply the rerank rules to each user's list -> (n, k) items (scores: k - position)."""
    out = np.zeros((len(batch.histories), config.k), np.int64)
    for u in range(len(out)):
        trace = {} if traces is not None else None
        chosen = rerank(cands.items[u], cands.scores[u], batch.histories[u], item_genres, pop_pct, config, trace)
        out[u, :len(chosen)] = chosen
        if traces is not None:
            traces.append(trace)
    return Candidates(out, np.broadcast_to(np.arange(config.k, 0, -1, dtype=np.float32), out.shape).copy())


# ---------------------------------------------------------------- training examples for the two rankers

def coarse_examples(routes: Mapping[str, Route], ctx: FeatureContext, view: SplitView,
                    config: FunnelConfig) -> tuple[RecallOutput, np.ndarray, np.ndarray]:
    """Recall and coarse columns for every target of a view, through the serving functions (so training
    and serving cannot drift) -> (recall output, X (n, recall_k, F), labels (n, recall_k) 0/1)."""
    batch = Batch.from_view(view)
    rec = recall_stage(routes, batch, config)
    labels = (rec.candidates.items == view.targets[:, None]).astype(np.float32)
    return rec, coarse_features(ctx, batch, rec), labels


def fine_examples(models: Sequence, coarse: LambdaMartRanker, view: SplitView, rec: RecallOutput,
                  X: np.ndarray, config: FunnelConfig) -> tuple[np.ndarray, np.ndarray]:
    """The fine ranker's columns for the coarse survivors of a view -> (X (n, coarse_k, F + 3),
    labels (n, coarse_k) 0/1). ``rec`` and ``X`` come from `coarse_examples` on the same view."""
    batch = Batch.from_view(view)
    cands = coarse_stage(coarse, X, rec, config.coarse_k)
    Xf = fine_feature_matrix(cands.features, fine_scores(models, batch, cands))
    return Xf, (cands.items == view.targets[:, None]).astype(np.float32)


# ---------------------------------------------------------------- the loop

@dataclass
class FunnelOutput:
    stages: dict[str, Candidates]   # "recall", "coarse", "fine", "rerank" -> candidates after that stage
    ms: dict[str, float]            # wall milliseconds of each stage for the whole batch
    traces: list | None = None      # rerank decisions per user, when asked


def recommend(funnel: Funnel, batch: Batch, trace: bool = False) -> FunnelOutput:
    """Run every stage on a batch of users; ``out.stages["rerank"].items`` are the lists to show."""
    cfg = funnel.config
    stages: dict[str, Candidates] = {}
    ms: dict[str, float] = {}
    t = time.perf_counter()
    rec = recall_stage(funnel.routes, batch, cfg)
    stages["recall"] = cands = rec.candidates
    ms["recall"] = 1e3 * (time.perf_counter() - t)
    if funnel.coarse is not None:
        t = time.perf_counter()
        X = coarse_features(funnel.context, batch, rec)
        stages["coarse"] = cands = coarse_stage(funnel.coarse, X, rec, cfg.coarse_k)
        ms["coarse"] = 1e3 * (time.perf_counter() - t)
    if funnel.fine:
        t = time.perf_counter()
        stages["fine"] = cands = fine_stage(funnel.fine, batch, cands, funnel.fine_ranker, cfg.coarse_weight)
        ms["fine"] = 1e3 * (time.perf_counter() - t)
    t = time.perf_counter()
    traces = [] if trace else None
    pop_pct = popularity_percentile(funnel.context.item_counts)
    stages["rerank"] = rerank_stage(batch, cands, funnel.context.item_genres, pop_pct, cfg.rerank, traces)
    ms["rerank"] = 1e3 * (time.perf_counter() - t)
    return FunnelOutput(stages, ms, traces)


def evaluate_funnel(funnel: Funnel, view: SplitView, batch_size: int = 1, recall_k: int = 50) -> dict[str, dict]:
    """Per-stage quality of the funnel on a split, and latency per user.

    Runs ``batch_size`` users at a time (1 = the serving shape, so the latencies are per-user figures).
    -> {stage: {"ndcg@10", "hr@10", "recall@50" (where the list has 50 items), "coverage", "diversity",
    "novelty", "p50_ms", "p95_ms"}}; a stage's latency is cumulative (the time to get its list).
    """
    lists: dict[str, list[np.ndarray]] = {}
    times: dict[str, list[float]] = {}
    for s in range(0, len(view), batch_size):
        out = recommend(funnel, Batch.from_view(view, np.arange(s, min(s + batch_size, len(view)))))
        total = 0.0
        for name, c in out.stages.items():
            total += out.ms[name]
            lists.setdefault(name, []).append(c.items)
            times.setdefault(name, []).append(total / len(c.items))
    counts = funnel.context.item_counts
    result = {}
    for name, parts in lists.items():
        topk = np.concatenate(parts)
        m = evaluate_lists(topk, view.targets, funnel.context.item_genres, counts, 10, recall_k)
        if name == "recall":
            m[f"recall@{topk.shape[1]}"] = recall_at_k(topk, view.targets, topk.shape[1])
        m["p50_ms"], m["p95_ms"] = (float(np.percentile(times[name], q)) for q in (50, 95))
        result[name] = m
    return result

"""Fine ranking stage: rescores the coarse ranker's top few candidates with a cross-encoder
(`funnel.ranking.models.cross_encoder`) and feeds the re-rank stage."""
from __future__ import annotations

import dataclasses
import json
import logging
import time
from typing import TYPE_CHECKING

import numpy as np

from funnel.core.config import Config
from funnel.ranking.serving.stages import Candidates, Request, StageTrace

if TYPE_CHECKING:  # the model module imports torch and transformers: a BM25-only server starts without them
    from funnel.ranking.models.cross_encoder import CrossEncoder

log = logging.getLogger(__name__)
DEFAULT_FINE_WEIGHT = 32.0  # without a fitted weight: mostly the coarse order, the cross-encoder breaks near-ties


def fusion_choice(config: Config) -> tuple[float, bool]:
    """(w, cpu_fine): the w of ``fine score = cross-encoder logit + w x coarse score``, and whether the
    `cpu` profile runs the fine stage at all. ``pipeline.fine_weight`` when set (>= 0: the stage always
    runs), else what `funnel build` chose on held-out training queries (``fusion.json``, written by
    `funnel.ranking.training.fusion`: the stage is dropped from the `cpu` profile where its best weight
    did not beat the coarse ranker alone), else (DEFAULT_FINE_WEIGHT, True)."""
    if config.pipeline.fine_weight >= 0:
        return config.pipeline.fine_weight, True
    try:
        meta = json.loads(config.paths.fusion.read_text(encoding="utf-8"))
        return float(meta["fine_weight"]), bool(meta.get("cpu_fine", True))
    except FileNotFoundError:
        return DEFAULT_FINE_WEIGHT, True
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("%s: unreadable (%s); fine_weight %g", config.paths.fusion, exc, DEFAULT_FINE_WEIGHT)
        return DEFAULT_FINE_WEIGHT, True



class CrossEncoderReranker:
    """Fine-ranking stage: rescores the top `depth` candidates with the cross-encoder.

    The final score is ``ce + fuse_weight * coarse`` when ``fuse_weight`` is set (the cross-encoder's
    logit plus the previous stage's score, weighted: `fusion_choice`), or the cross-encoder logit
    alone when it is 0. Candidates below `depth` keep the previous stage's order after the rescored ones (their
    scores shifted to sit below), so a shallow depth (the `cpu` profile's 6) still returns k results;
    their ``ce`` feature is 0 and ``ce_scored`` tells the two apart.
    """
    name = "fine"

    def __init__(self, encoder: CrossEncoder, texts, *, depth: int = 20, batch_size: int = 32,
                 fuse_weight: float = 0.0):
        self.encoder = encoder
        self.texts = texts  # callable: list of doc ids -> list of document strings
        self.depth = depth
        self.batch_size = batch_size
        self.fuse_weight = fuse_weight

    def rank(self, request: Request, candidates: Candidates, k: int) -> Candidates:
        t0 = time.perf_counter()
        n_top = min(self.depth, len(candidates))
        n_all = max(n_top, min(k, len(candidates)))
        top = candidates.take(np.arange(n_top))
        ce = np.asarray(self.encoder.score(request.query or "", self.texts(top.doc_ids), self.batch_size),
                        np.float32)
        score = ce + self.fuse_weight * top.scores if self.fuse_weight else ce
        order = np.lexsort((np.arange(n_top), -score))[:k]  # (n_kept,) positions in the top
        idx, new_scores = order, score[order].astype(np.float64)
        if n_all > n_top and len(order):  # the tail, unscored, below the rescored head, in its old order
            tail = np.arange(n_top, n_all)
            prev = candidates.scores[tail].astype(np.float64)
            idx = np.concatenate([order, tail])
            new_scores = np.concatenate([new_scores, prev + (new_scores.min() - prev.max() - 1e-3)])
        rest = np.zeros(len(candidates) - n_top, np.float32)
        scored = dataclasses.replace(candidates, features={
            **candidates.features, "ce": np.concatenate([ce, rest]),
            "ce_scored": np.concatenate([np.ones(n_top, np.float32), rest])})
        out = scored.take(idx, new_scores)
        out.trace = candidates.trace + [StageTrace(self.name, list(out.doc_ids), out.scores.copy(),
                                                   (time.perf_counter() - t0) * 1000)]
        return out

"""Coarse ranking: a LightGBM LambdaMART model over the cheap features of `funnel.ranking.serving.features` narrows
recall's candidates (hundreds to a thousand) to the few the cross-encoder reads.

Files of a coarse model folder (``HOME/models/coarse/``)
--------------------------------------------------------
- ``model.txt``: the LightGBM booster in LightGBM's own text format (``Booster.save_model``);
- ``meta.json``: ``format_version`` (1), ``features`` (column order), ``best_iteration``,
  ``importance`` (``{"gain": {feature: value}, "split": {...}}``), ``dev`` metrics, the coarse config.
Never pickle: both files are plain text any LightGBM version can read.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from funnel.core.errors import InputError
from funnel.ranking.serving.features import FEATURES, FeatureContext, compute_features
from funnel.ranking.serving.stages import Candidates, Request, StageTrace

MODEL_FILE = "model.txt"
META_FILE = "meta.json"
FORMAT_VERSION = 1


@dataclass
class CoarseModel:
    booster: object  # lightgbm.Booster
    meta: dict

    @property
    def features(self) -> list[str]:
        return list(self.meta["features"])

    def predict(self, X: np.ndarray) -> np.ndarray:
        """(n, n_features) -> float32 (n,) scores. One thread: a query's few hundred rows gain nothing from more."""
        if len(X) == 0:
            return np.zeros(0, np.float32)
        return self.booster.predict(X, num_iteration=self.meta.get("best_iteration") or None,
                                    num_threads=1).astype(np.float32)

    def save(self, out_dir: str | Path) -> Path:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        # both files written aside, then renamed: a kill leaves each file whole, old or new, never cut off
        # (`funnel build` publishes the whole folder by one rename on top of this)
        tmp_meta = out / (META_FILE + ".tmp")
        tmp_meta.write_text(json.dumps({"format_version": FORMAT_VERSION, **self.meta}, indent=2), encoding="utf-8")
        tmp = out / (MODEL_FILE + ".tmp")
        # the same text as Booster.save_model, written by Python: a full disk raises (ENOSPC) instead of
        # leaving LightGBM's C++ stream to cut the file short
        tmp.write_text(self.booster.model_to_string(), encoding="utf-8")
        tmp_meta.replace(out / META_FILE)
        tmp.replace(out / MODEL_FILE)
        return out

    @classmethod
    def load(cls, path: str | Path) -> "CoarseModel":
        import lightgbm as lgb

        path = Path(path)
        if not (path / MODEL_FILE).exists() or not (path / META_FILE).exists():
            raise InputError(f"{path}: no coarse model here (needs {MODEL_FILE} and {META_FILE}); "
                             f"train one with `funnel train coarse`")
        meta = json.loads((path / META_FILE).read_text(encoding="utf-8"))
        unknown = [f for f in meta.get("features", []) if f not in FEATURES]
        if unknown:
            raise InputError(f"{path / META_FILE}: features {unknown} are not computed by funnel.ranking.serving.features")
        return cls(lgb.Booster(model_file=str(path / MODEL_FILE)), meta)


class CoarseRanker:
    """Coarse stage: features of every candidate -> LightGBM score -> top k.

    The feature columns are stored on the returned candidates (``features[name]``), which is what
    `--explain` and the dashboard show, and what the model's feature contributions refer to.
    """
    name = "coarse"

    def __init__(self, model: CoarseModel, ctx: FeatureContext):
        self.model = model
        self.ctx = ctx
        self._cols = [FEATURES.index(f) for f in model.features]

    def rank(self, request: Request, candidates: Candidates, k: int) -> Candidates:
        t0 = time.perf_counter()
        X = compute_features(self.ctx, request.query or "", candidates.ords, candidates.doc_ids,
                             candidates.features.get("dense"))
        scores = self.model.predict(X[:, self._cols])
        order = np.lexsort((np.arange(len(scores)), -scores))[:k]
        feats = {name: X[:, i] for i, name in enumerate(FEATURES)}
        cands = Candidates(candidates.ords, candidates.doc_ids, candidates.scores,
                           {**candidates.features, **feats}, candidates.trace)
        out = cands.take(order, scores[order])
        out.trace = candidates.trace + [StageTrace(self.name, list(out.doc_ids), out.scores.copy(),
                                                   (time.perf_counter() - t0) * 1000)]
        return out

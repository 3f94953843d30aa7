"""Coarse stage of the recommendation funnel: a LightGBM LambdaMART model over the cheap columns of
`features` narrows recall's ~200 candidates per user to the ~50 that the fine stage (SASRec) reads.
The fine stage's final combination (SASRec score + the coarse columns) is the same kind of model on
`features.fine_feature_names`, so both use `LambdaMartRanker`.

Training data: each user's last TRAIN interaction is the target (split ``"train"``), its candidates
come from models fitted without it, and the label is 1 for the target, 0 for the other candidates.
Users whose target the earlier stages missed are dropped (a group without a positive teaches
nothing). Model selection (early stopping) reads the dev split, built the same way with models
fitted on the whole train part.

Files of a ranker folder (``LambdaMartRanker.save``)
------------------------------------------------------
- ``model.txt``: the booster in LightGBM's own text format (``Booster.save_model``);
- ``meta.json``: ``format_version`` (1), ``features`` (column order), ``best_iteration``, ``config``
  (the `LambdaMartConfig`), ``importance`` (gain per feature), ``dev`` (LightGBM's dev NDCG@k per round
  kept: the best). Never pickle: both files are plain text.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

MODEL_FILE = "model.txt"
META_FILE = "meta.json"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class LambdaMartConfig:
    top_k: int = 50                 # candidates kept by `rank` (the coarse stage passes 50 to the fine stage)
    n_estimators: int = 400
    learning_rate: float = 0.05
    num_leaves: int = 15
    min_data_in_leaf: int = 50
    feature_fraction: float = 0.8
    early_stopping_rounds: int = 40
    eval_at: int = 10
    num_threads: int = 2
    seed: int = 0


def _groups(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n_users, c) labels -> (rows of users with a positive, group sizes)."""
    keep = np.flatnonzero(labels.sum(axis=1) > 0)
    return keep, np.full(len(keep), labels.shape[1], np.int64)


class LambdaMartRanker:
    """LightGBM LambdaMART over named feature columns; `rank` keeps each user's top k."""

    def __init__(self, booster, meta: dict):
        self.booster = booster
        self.meta = meta

    @property
    def features(self) -> list[str]:
        return list(self.meta["features"])

    @classmethod
    def fit(cls, X: np.ndarray, labels: np.ndarray, X_dev: np.ndarray, labels_dev: np.ndarray,
            features: list[str], config: LambdaMartConfig = LambdaMartConfig()) -> "LambdaMartRanker":
        """X: (n_users, c, F) features, labels: (n_users, c) 0/1; the same for dev (early stopping)."""
        try:
            import lightgbm as lgb
        except ImportError as e:
            raise ImportError("the coarse ranker needs LightGBM: pip install lightgbm") from e
        if X.shape[2] != len(features):
            raise ValueError(f"X has {X.shape[2]} feature columns, feature names {len(features)}")
        rows, groups = _groups(labels)
        if len(rows) == 0:
            raise ValueError("LambdaMartRanker.fit: no training user has its target among the candidates; "
                             "the earlier stages found nothing to learn from")
        drows, dgroups = _groups(labels_dev)
        f = X.shape[2]
        train = lgb.Dataset(X[rows].reshape(-1, f), labels[rows].reshape(-1), group=groups,
                            feature_name=features, free_raw_data=True)
        dev = lgb.Dataset(X_dev[drows].reshape(-1, f), labels_dev[drows].reshape(-1), group=dgroups,
                          reference=train)
        params = {"objective": "lambdarank", "metric": "ndcg", "eval_at": [config.eval_at],
                  "learning_rate": config.learning_rate, "num_leaves": config.num_leaves,
                  "min_data_in_leaf": config.min_data_in_leaf, "feature_fraction": config.feature_fraction,
                  "lambdarank_truncation_level": max(config.top_k, config.eval_at),
                  "num_threads": config.num_threads, "seed": config.seed, "deterministic": True,
                  "force_row_wise": True, "verbose": -1}
        evals: dict = {}
        booster = lgb.train(params, train, num_boost_round=config.n_estimators, valid_sets=[dev],
                            valid_names=["dev"],
                            callbacks=[lgb.early_stopping(config.early_stopping_rounds, verbose=False),
                                       lgb.record_evaluation(evals)])
        gain = booster.feature_importance("gain")
        meta = {"features": features, "best_iteration": int(booster.best_iteration or booster.current_iteration()),
                "config": asdict(config), "importance": {n: float(g) for n, g in zip(features, gain)},
                "dev": {f"ndcg@{config.eval_at}": float(max(evals["dev"][f"ndcg@{config.eval_at}"]))},
                "n_train_groups": int(len(rows))}
        return cls(booster, meta)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """(n, c, F) or (c, F) features -> scores of the same leading shape (float32)."""
        shape = X.shape[:-1]
        flat = X.reshape(-1, X.shape[-1])
        if len(flat) == 0:
            return np.zeros(shape, np.float32)
        s = self.booster.predict(flat, num_iteration=self.meta["best_iteration"],
                                 num_threads=self.meta["config"]["num_threads"])
        return s.reshape(shape).astype(np.float32)

    def rank(self, X: np.ndarray, candidates: np.ndarray,
             k: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Keep the top k (config.top_k by default) of each user's candidates: X (n, c, F), candidates
        (n, c) -> (items (n, k), scores (n, k), positions (n, k) into the c candidates), best first."""
        k = min(k or self.meta["config"]["top_k"], candidates.shape[1])
        s = self.predict(X)                                            # (n, c)
        order = np.argsort(-s, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(candidates, order, 1), np.take_along_axis(s, order, 1), order

    def save(self, out_dir: str | Path) -> Path:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        tmp = out / (MODEL_FILE + ".tmp")
        self.booster.save_model(str(tmp), num_iteration=self.meta["best_iteration"])
        tmp.replace(out / MODEL_FILE)
        (out / META_FILE).write_text(json.dumps({"format_version": FORMAT_VERSION, **self.meta}, indent=2),
                                     encoding="utf-8")
        return out

    @classmethod
    def load(cls, path: str | Path) -> "LambdaMartRanker":
        import lightgbm as lgb

        path = Path(path)
        if not (path / MODEL_FILE).exists() or not (path / META_FILE).exists():
            raise FileNotFoundError(f"{path}: no LambdaMART ranker here (needs {MODEL_FILE} and {META_FILE})")
        meta = json.loads((path / META_FILE).read_text(encoding="utf-8"))
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{path / META_FILE}: format_version {meta.get('format_version')}, "
                             f"this code reads {FORMAT_VERSION}")
        meta.pop("format_version")
        return cls(lgb.Booster(model_file=str(path / MODEL_FILE)), meta)

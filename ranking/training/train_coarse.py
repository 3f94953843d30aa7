"""Training of the coarse ranker: LightGBM LambdaMART on recall candidates of the ``train`` judgements,
early stopping on ``dev`` nDCG@10. Feeds `funnel.ranking.serving.coarse` (model folder) and writes a JSONL log.

Each training list is one judged query's top ``coarse.train_depth`` recall candidates, labelled with
their judged grade (0 when unjudged); queries whose candidates hold no relevant document carry
no LambdaMART gradient and are left out. ``coarse.max_train_queries`` keeps a seeded sample of the
judged queries (what `funnel build` sets when its budget cannot afford every list). Features come from `funnel.ranking.serving.features.compute_features`,
the same function the serving stage calls.
"""
from __future__ import annotations

import json
import logging
import random
import time
from pathlib import Path

import numpy as np

from funnel.core.config import Config
from funnel.core.errors import InputError
from funnel.core.judgements import read_qrels, read_queries
from funnel.index.pagerank import load_pagerank
from funnel.ranking.evaluate import evaluate
from funnel.ranking.models.dual_encoder import resolve_model_path
from funnel.ranking.serving.coarse import CoarseModel
from funnel.ranking.serving.features import compute_features, FeatureContext, FEATURES
from funnel.ranking.serving.pipeline import Pipeline
from funnel.ranking.serving.recall import build_recall
from funnel.ranking.serving.stages import Candidates, Request
from funnel.ranking.training.cross_fit import read_folds


log = logging.getLogger(__name__)


def candidate_lists(recall, ctx, queries: dict[str, str], qrels: dict[str, dict[str, int]], depth: int,
                    *, progress: bool = True, desc: str = "features"):
    """(X (n, n_features) float32, y (n,) int, group sizes, qids, doc ids) over the judged queries."""
    from tqdm.auto import tqdm

    Xs, ys, groups, qids, dids = [], [], [], [], []
    for qid in tqdm(sorted(qrels), desc=desc, disable=not progress):
        req = Request(query=queries[qid], k=depth)
        cands = recall.rank(req, Candidates.empty(), depth)
        cands = cands.take(np.arange(min(depth, len(cands))))  # a route may return more than asked
        if not len(cands):
            continue
        X = compute_features(ctx, req.query, cands.ords, cands.doc_ids, cands.features.get("dense"))
        y = np.array([max(qrels[qid].get(d, 0), 0) for d in cands.doc_ids], dtype=np.int32)
        Xs.append(X)
        ys.append(y)
        groups.append(len(y))
        qids.append(qid)
        dids.append(cands.doc_ids)
    if not Xs:
        return np.zeros((0, len(FEATURES)), np.float32), np.zeros(0, np.int32), [], [], []
    return np.concatenate(Xs), np.concatenate(ys), groups, qids, dids


def _folds(config: Config):
    """HOME's out-of-fold encoders, or None (with a warning when a fine-tuned encoder makes that a leak)."""

    folds = read_folds(config.paths.dual_encoder_folds)
    if folds is None and (config.paths.dense_index / "manifest.json").exists() \
            and resolve_model_path(config) not in ("minilm", "tiny"):
        log.warning("no out-of-fold encoders in %s: the train lists' dense scores come from an encoder trained on "
                    "those queries (a stacking leak); `funnel train dual-encoder --data DIR --folds %d` fixes it",
                    config.paths.dual_encoder_folds, config.coarse.cross_fit)
    return folds


def _out_of_fold_lists(config: Config, folds, retriever, recall, ctx, queries, qrels, progress: bool):
    """Training lists whose recall candidates and dense feature come from the fold encoder that never
    saw the query (`funnel.ranking.training.cross_fit`); queries outside every fold use the serving recall."""
    from dataclasses import replace

    fold_of, paths = folds
    plans = [(build_recall(replace(config, dense=replace(config.dense, model=str(p))), retriever=retriever,
                            k=config.pipeline.recall_k),
              {q: j for q, j in qrels.items() if fold_of.get(q) == i}, f"features fold {i}")
             for i, p in enumerate(paths)]
    plans.append((recall, {q: j for q, j in qrels.items() if q not in fold_of}, "features (no fold)"))
    parts = [candidate_lists(r, ctx, queries, part, config.coarse.train_depth, progress=progress, desc=desc)
             for r, part, desc in plans if part]
    return (np.concatenate([x for x, *_ in parts]), np.concatenate([y for _, y, *_ in parts]),
            [g for _, _, groups, *_ in parts for g in groups])


def _keep_lists_with_positives(X, y, groups):
    keep_rows, keep_groups, start = [], [], 0
    for g in groups:
        if y[start:start + g].max() > 0:
            keep_rows.append(np.arange(start, start + g))
            keep_groups.append(g)
        start += g
    rows = np.concatenate(keep_rows) if keep_rows else np.zeros(0, np.int64)
    return X[rows], y[rows], keep_groups


def train_coarse(config: Config, data_dir: str | Path, out_dir: str | Path | None = None, *,
                 train_split: str = "train", dev_split: str = "dev", log_file: str | Path | None = None,
                 progress: bool = True) -> Path:
    """Train LambdaMART on HOME's recall candidates; save model.txt + meta.json into `out_dir`."""
    import lightgbm as lgb

    cc = config.coarse
    data_dir = Path(data_dir)
    out_dir = Path(out_dir) if out_dir else config.paths.coarse_model
    queries = read_queries(data_dir)
    splits = {}
    for split in (train_split, dev_split):
        qrels = read_qrels(data_dir, split)
        splits[split] = {q: d for q, d in qrels.items() if q in queries and any(g > 0 for g in d.values())}
        if not splits[split]:
            raise InputError(f"{data_dir}/qrels/{split}.tsv: no judged query with a positive in queries.jsonl")
    if cc.max_train_queries and len(splits[train_split]) > cc.max_train_queries:
        keep = random.Random(cc.seed).sample(sorted(splits[train_split]), cc.max_train_queries)
        splits[train_split] = {q: splits[train_split][q] for q in sorted(keep)}
    t0 = time.perf_counter()
    # The recall stage (and feature context) exactly as serving builds them.
    pipe = Pipeline.from_config(config, "cpu", stages=[])

    res = pipe.resources
    ctx = FeatureContext(res["retriever"], res["docs"], load_pagerank(config.paths.home))
    recall = pipe.stages[0][0]
    try:
        folds = _folds(config) if cc.cross_fit else None
        if folds is not None:
            Xt, yt, gt = _out_of_fold_lists(config, folds, res["retriever"], recall, ctx, queries,
                                            splits[train_split], progress)
        else:
            Xt, yt, gt, _, _ = candidate_lists(recall, ctx, queries, splits[train_split], cc.train_depth,
                                               progress=progress, desc=f"features {train_split}")
        Xd, yd, gd, qd, dd = candidate_lists(recall, ctx, queries, splits[dev_split], cc.train_depth,
                                             progress=progress, desc=f"features {dev_split}")
    finally:
        pipe.close()
    Xt_fit, yt_fit, gt_fit = _keep_lists_with_positives(Xt, yt, gt)
    Xd_fit, yd_fit, gd_fit = _keep_lists_with_positives(Xd, yd, gd)
    if not gt_fit or not gd_fit:
        raise InputError(f"{data_dir}: no {train_split if not gt_fit else dev_split} query has a relevant "
                         f"document among its top {cc.train_depth} recall candidates")
    feature_secs = time.perf_counter() - t0
    params = {"objective": "lambdarank", "metric": "ndcg", "eval_at": [10], "num_leaves": cc.num_leaves,
              "learning_rate": cc.learning_rate, "min_child_samples": cc.min_child_samples,
              "feature_fraction": 0.9, "bagging_fraction": 0.9, "bagging_freq": 1, "seed": cc.seed,
              "deterministic": True, "num_threads": 2, "verbose": -1, "lambdarank_truncation_level": 20}
    train_set = lgb.Dataset(Xt_fit, yt_fit, group=gt_fit, feature_name=list(FEATURES), free_raw_data=False)
    dev_set = lgb.Dataset(Xd_fit, yd_fit, group=gd_fit, reference=train_set, free_raw_data=False)
    history: dict = {}
    booster = lgb.train(params, train_set, num_boost_round=cc.n_estimators, valid_sets=[dev_set],
                        valid_names=[dev_split],
                        callbacks=[lgb.early_stopping(cc.early_stopping, verbose=False),
                                   lgb.record_evaluation(history)])
    best = int(booster.best_iteration or booster.current_iteration())
    model = CoarseModel(booster, {"features": list(FEATURES), "best_iteration": best})
    # Dev metrics of the whole ranked list (every judged dev query), before and after the coarse stage.
    run_recall, run_coarse, start = {}, {}, 0
    scores = model.predict(Xd)
    for qid, g, ids in zip(qd, gd, dd):
        run_recall[qid] = {d: float(g - i) for i, d in enumerate(ids)}
        run_coarse[qid] = dict(zip(ids, scores[start:start + g].tolist()))
        start += g
    dev_metrics = {"recall": evaluate(run_recall, splits[dev_split], ("nDCG@10", "Recall@100")),
                   "coarse": evaluate(run_coarse, splits[dev_split], ("nDCG@10", "Recall@100"))}
    gain = booster.feature_importance("gain", iteration=best)
    split_imp = booster.feature_importance("split", iteration=best)
    model.meta.update({
        "importance": {"gain": {f: round(float(v), 3) for f, v in zip(FEATURES, gain)},
                       "split": {f: int(v) for f, v in zip(FEATURES, split_imp)}},
        "dev": dev_metrics, "train_lists": len(gt_fit), "dev_lists": len(gd_fit), "train_rows": int(len(yt_fit)),
        "recall": recall.__class__.__name__, "coarse_config": config.to_dict()["coarse"],
        "cross_fit": folds is not None,
        "seconds": {"features": round(feature_secs, 1), "total": round(time.perf_counter() - t0, 1)},
    })
    model.save(out_dir)
    (out_dir / "importance.json").write_text(json.dumps(model.meta["importance"], indent=2), encoding="utf-8")
    if log_file:
        with open(log_file, "w", encoding="utf-8") as f:
            for i, v in enumerate(history.get(dev_split, {}).get("ndcg@10", []), 1):
                f.write(json.dumps({"iteration": i, f"{dev_split}_ndcg@10": round(v, 5)}) + "\n")
            f.write(json.dumps({"summary": {k: model.meta[k] for k in ("best_iteration", "dev", "importance",
                                                                        "train_lists", "seconds")}}) + "\n")
    log.info("coarse model saved to %s: best iteration %d, dev %s", out_dir, best, dev_metrics)
    return out_dir

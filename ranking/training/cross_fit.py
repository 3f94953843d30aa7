"""Out-of-fold dual encoders for the coarse ranker's training lists: stacking without a leak.

The coarse ranker (LightGBM) learns how far to trust each recall signal. A dual encoder fine-tuned
on the ``train`` queries scores those very queries' positives far higher than it will score a new
query's, so a coarse ranker trained on its candidates and dense feature learns to trust dense
recall too much (SciFact dev: 0.809 with zero-shot dense features, 0.798 with the leaky tuned ones,
0.814 cross-fitted; `funnel train coarse` with each setup, 2026-12-01).
The cure is the usual one for stacking: K query-tower encoders, fold k trained on the train queries
of the other K-1 folds, and each train query's candidates and features computed by the encoder
that never saw it. Dev and serving use the encoder trained on everything.

Files (``HOME/models/dual-encoder-folds/``, written by `train_fold_encoders`):
- ``fold-0/`` ... ``fold-{K-1}/``: dual-encoder folders (`funnel.ranking.models.dual_encoder`), query towers over the
  same frozen document tower as HOME's vector index;
- ``folds.json``: ``{"format": 1, "k": K, "seed": int, "split": "train", "fold_of": {query id: fold}}``.
Written into ``.tmp-dual-encoder-folds/`` and swapped in whole (`funnel.core.publish`): a run killed half
way leaves the previous folds, never some folds of one run and some of another.
"""
from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path

from funnel.core.config import Config
from funnel.core.errors import InputError
from funnel.core.judgements import read_qrels
from funnel.core.publish import fresh_tmp, publish_folder
from funnel.ranking.training.train_dense import train_dual_encoder




def assign_folds(qids, k: int, seed: int = 0) -> dict[str, int]:
    """Each query id to one of `k` folds of near-equal size (seeded shuffle, then round robin)."""
    if k < 2:
        raise InputError(f"cross-fitting needs at least 2 folds, got {k}")
    order = sorted(qids)
    random.Random(seed).shuffle(order)
    return {q: i % k for i, q in enumerate(order)}


def train_fold_encoders(config: Config, data_dir: str | Path, k: int, out_dir: str | Path | None = None, *,
                        split: str = "train", dev_split: str = "dev", device: str = "auto",
                        progress: bool = True) -> Path:
    """Train the `k` out-of-fold query-tower encoders; returns the folder (see the module docstring)."""

    out = Path(out_dir) if out_dir else config.paths.dual_encoder_folds
    qrels = read_qrels(Path(data_dir), split)
    fold_of = assign_folds([q for q, j in qrels.items() if any(g > 0 for g in j.values())], k,
                           config.train_dense.seed)
    # query towers only: the folds must share the vector index's document vectors
    config = replace(config, train_dense=replace(config.train_dense, towers="query"))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = fresh_tmp(out)
    for i in range(k):
        held_out = frozenset(q for q, f in fold_of.items() if f == i)
        train_dual_encoder(config, data_dir, tmp / f"fold-{i}", split=split, dev_split=dev_split,
                           log_file=tmp / f"fold-{i}" / "train_log.jsonl", device=device, progress=progress,
                           exclude=held_out)
    (tmp / "folds.json").write_text(json.dumps({"format": 1, "k": k, "seed": config.train_dense.seed,
                                                "split": split, "fold_of": fold_of}, indent=1), encoding="utf-8")
    return publish_folder(tmp, out)


def read_folds(folder: str | Path) -> tuple[dict[str, int], list[Path]] | None:
    """(query id -> fold, fold model folders) of a folder written by `train_fold_encoders`, or None."""
    folder = Path(folder)
    meta_file = folder / "folds.json"
    if not meta_file.exists():
        return None
    meta = json.loads(meta_file.read_text(encoding="utf-8"))
    paths = [folder / f"fold-{i}" for i in range(int(meta["k"]))]
    missing = [p for p in paths if not (p / "dual_encoder.json").exists()]
    if missing:
        raise InputError(f"{meta_file}: fold model {missing[0]} is missing; retrain with --folds")
    return {q: int(f) for q, f in meta["fold_of"].items()}, paths

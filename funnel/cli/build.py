"""`funnel build --data DIR`: the whole funnel for a BEIR-format corpus in one command. Ingests it into
the store, indexes it, trains every model (dual encoder + vector index when dense recall is
installed, LightGBM coarse ranker, cross-encoder) and publishes them under ``HOME/models/``.

Each model is trained into ``HOME/models/.tmp-NAME`` and then swapped in by renames, so a
serving process that opens ``HOME/models/NAME`` sees the old model or the new one, never a
half-written folder. Steps run in data-flow order because each feeds the next: the coarse
ranker learns on the recall candidates (hybrid when the dense index exists), and the
cross-encoder on BM25 hard negatives. On a 2-core CPU the whole build of SciFact takes about
half an hour to an hour; a GPU cuts the neural steps to minutes.
"""
from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path

from funnel.core.config import Config
from funnel.core.errors import InputError

log = logging.getLogger(__name__)


def publish(tmp: Path, final: Path) -> Path:
    """Swap a freshly trained model folder into place (old one renamed aside, then removed)."""
    old = final.with_name(f".old-{final.name}")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    if old.exists():
        shutil.rmtree(old)
    return final


def _fresh_tmp(models: Path, name: str) -> Path:
    tmp = models / f".tmp-{name}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def build(config: Config, data_dir: str | Path, *, train_split: str = "train", dev_split: str = "dev",
          skip: tuple[str, ...] = (), device: str = "auto", progress: bool = True) -> dict[str, str]:
    """Ingest, index and train the funnel for `data_dir`; returns one line of summary per step."""
    from funnel.crawler.beir import ingest_beir
    from funnel.core.store import DocumentStore
    from funnel.index.analyze import Analyzer
    from funnel.index.builder import build_index

    data_dir = Path(data_dir)
    for split in (train_split, dev_split):
        if not (data_dir / "qrels" / f"{split}.tsv").exists():
            raise InputError(f"{data_dir}/qrels/{split}.tsv: missing; `funnel build` trains on {train_split} "
                             f"judgements and stops early on {dev_split} judgements")
    report: dict[str, str] = {}
    models = config.paths.models
    models.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    if "ingest" not in skip:
        with DocumentStore(config.paths.store) as store:
            counts = ingest_beir(data_dir, store)
            manifest = build_index(store, config.paths.index, Analyzer(config.analyzer), progress=progress)
        report["ingest+index"] = (f"{counts['docs']} docs, index generation {manifest['generation']} "
                                  f"({time.perf_counter() - t0:.0f} s)")

    if "dense" not in skip:
        report["dense"] = _build_dense(config, data_dir, train_split, dev_split, models, device, progress)

    if "coarse" not in skip:
        from funnel.ranking.training.train_coarse import train_coarse

        t = time.perf_counter()
        tmp = _fresh_tmp(models, "coarse")
        train_coarse(config, data_dir, tmp, train_split=train_split, dev_split=dev_split,
                     log_file=tmp / "train_log.jsonl", progress=progress)
        publish(tmp, config.paths.coarse_model)
        report["coarse"] = f"{config.paths.coarse_model} ({time.perf_counter() - t:.0f} s)"

    if "cross-encoder" not in skip:
        from funnel.ranking.training.train_cross import train_cross_encoder

        t = time.perf_counter()
        tmp = _fresh_tmp(models, "cross-encoder")
        train_cross_encoder(config, data_dir, tmp, split=train_split, dev_split=dev_split, log_file=tmp / "train_log.jsonl",
                            device=device, progress=progress)
        publish(tmp, config.paths.cross_encoder)
        report["cross-encoder"] = f"{models / 'cross-encoder'} ({time.perf_counter() - t:.0f} s)"
    report["total"] = f"{time.perf_counter() - t0:.0f} s"
    return report


def _build_dense(config: Config, data_dir: Path, train_split: str, dev_split: str, models: Path, device: str,
                 progress: bool) -> str:
    """Dual encoder + vector index. With the query tower trained alone (the CPU default), the documents
    are encoded once, by the frozen starting tower, before training; training reads those vectors and
    the index stays valid after it. A fully fine-tuned encoder re-embeds the corpus afterwards."""
    from funnel.core.device import resolve_device
    from funnel.ranking.training.cross_fit import train_fold_encoders
    from funnel.ranking.models.dual_encoder import embed_store
    from funnel.ranking.training.train_dense import resolve_towers, train_dual_encoder

    t = time.perf_counter()
    towers = resolve_towers(config.train_dense.towers, resolve_device(device)[0])
    if towers == "query":
        embed_store(config, config.train_dense.backbone, rebuild=True, progress=progress)
    tmp = _fresh_tmp(models, "dual-encoder")
    train_dual_encoder(config, data_dir, tmp, split=train_split, dev_split=dev_split,
                       log_file=tmp / "train_log.jsonl", device=device, progress=progress)
    publish(tmp, config.paths.dual_encoder)
    manifest = embed_store(config, str(config.paths.dual_encoder), rebuild=towers != "query", progress=progress)
    stale = config.paths.dual_encoder_folds
    if stale.exists():  # folds of an earlier encoder or corpus must not feed this build's coarse ranker
        shutil.rmtree(stale)
    if config.coarse.cross_fit and towers == "query":  # out-of-fold encoders for the coarse training lists
        train_fold_encoders(config, data_dir, config.coarse.cross_fit, split=train_split, dev_split=dev_split,
                            device=device, progress=progress)
    elif config.coarse.cross_fit:
        log.info("coarse.cross_fit: skipped with shared towers (the folds must share the index's document vectors)")
    return f"{models / 'dual-encoder'}, {manifest['count']} vectors ({time.perf_counter() - t:.0f} s)"

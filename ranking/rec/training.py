"""Shared plumbing of the two torch models of the funnel (two-tower recall, SASRec fine stage): device
choice, one epoch loop with early stopping, and checkpoints as safetensors + JSON.

Why one loop: two hand-written loops drift (epochs counted from 0 in one and 1 in the other, a time
budget honoured by one only). Both models hand this module two callables, one epoch of training and
one evaluation, and get back the best weights and a report.

Files of a checkpoint folder (``save_checkpoint``)
--------------------------------------------------
- ``model.safetensors``: the module's ``state_dict`` (float32 tensors, names as in the module);
- ``config.json``: ``format_version`` (1), ``kind`` (``"sasrec"`` or ``"two_tower"``), ``config`` (the
  model's constructor arguments), ``fit`` (the training report: best epoch, dev metric per evaluation,
  seconds), ``versions`` (torch, safetensors). Never pickle: the weights are plain tensors.
"""
from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from funnel.core.device import resolve_device as core_resolve_device

log = logging.getLogger(__name__)

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
FORMAT_VERSION = 1


def resolve_device(device: str = "auto"):
    """The torch device of `funnel.core.device.resolve_device` ("auto": CUDA when available; an
    unavailable "cuda" falls back to CPU with a warning)."""
    return core_resolve_device(device)[0]


@dataclass
class FitReport:
    """What a training run did; saved in the checkpoint's config.json."""
    best_epoch: int = 0              # 1-based; 0 = the initial weights were never beaten
    best_metric: float = float("-inf")
    epochs_run: int = 0
    history: list[tuple[int, float, float]] = field(default_factory=list)  # (epoch, train loss, dev metric)
    seconds: float = 0.0
    stopped_by: str = "max_epochs"   # max_epochs | patience | time_budget


def fit_epochs(module, train_epoch: Callable[[int], float], evaluate: Callable[[], float] | None,
               max_epochs: int, patience: int = 5, eval_every: int = 1,
               time_budget_s: float | None = None) -> FitReport:
    """Run ``train_epoch(epoch) -> mean loss`` for up to ``max_epochs`` epochs (1-based), evaluate
    every ``eval_every`` epochs with ``evaluate() -> metric`` (higher is better), stop after
    ``patience`` evaluations without improvement or past the time budget, and leave ``module`` holding
    the best weights. Without ``evaluate`` the last epoch's weights are kept (used to refit a model for
    a known number of epochs)."""
    rep = FitReport()
    best_state = None
    start = time.perf_counter()
    bad = 0
    for epoch in range(1, max_epochs + 1):
        module.train()
        loss = float(train_epoch(epoch))
        rep.epochs_run = epoch
        metric = float("nan")
        if evaluate is not None and (epoch % eval_every == 0 or epoch == max_epochs):
            module.eval()
            metric = float(evaluate())
            if metric > rep.best_metric:
                rep.best_metric, rep.best_epoch, bad = metric, epoch, 0
                best_state = copy.deepcopy(module.state_dict())
            else:
                bad += 1
        rep.history.append((epoch, loss, metric))
        log.info("epoch %d loss %.4f dev %.4f", epoch, loss, metric)
        if evaluate is not None and bad >= patience:
            rep.stopped_by = "patience"
            break
        if time_budget_s is not None and time.perf_counter() - start > time_budget_s:
            rep.stopped_by = "time_budget"
            break
    if best_state is not None:
        module.load_state_dict(best_state)
    elif evaluate is None:
        rep.best_epoch = rep.epochs_run
    module.eval()
    rep.seconds = time.perf_counter() - start
    return rep


def save_checkpoint(out_dir: str | Path, module, kind: str, config: dict, fit: FitReport | None) -> Path:
    """Write ``model.safetensors`` + ``config.json`` (see the module docstring); weights land atomically."""
    import safetensors
    import torch
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in module.state_dict().items()}
    tmp = out / (WEIGHTS_FILE + ".tmp")
    save_file(state, str(tmp))
    tmp.replace(out / WEIGHTS_FILE)
    meta = {"format_version": FORMAT_VERSION, "kind": kind, "config": config,
            "fit": asdict(fit) if fit is not None else None,
            "versions": {"torch": torch.__version__, "safetensors": safetensors.__version__}}
    (out / CONFIG_FILE).write_text(json.dumps(meta, indent=2, default=_json_default), encoding="utf-8")
    return out


def load_checkpoint(path: str | Path, kind: str) -> tuple[dict, dict]:
    """-> (state_dict of CPU tensors, config.json contents); errors name the folder and what is missing."""
    from safetensors.torch import load_file

    path = Path(path)
    if not (path / WEIGHTS_FILE).exists() or not (path / CONFIG_FILE).exists():
        raise FileNotFoundError(f"{path}: no {kind} checkpoint here (needs {WEIGHTS_FILE} and {CONFIG_FILE})")
    meta = json.loads((path / CONFIG_FILE).read_text(encoding="utf-8"))
    if meta.get("kind") != kind:
        raise ValueError(f"{path / CONFIG_FILE}: holds a {meta.get('kind')!r} model, expected {kind!r}")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path / CONFIG_FILE}: format_version {meta.get('format_version')}, "
                         f"this code reads {FORMAT_VERSION}")
    return load_file(str(path / WEIGHTS_FILE)), meta


def report_from(meta: dict) -> FitReport | None:
    """The `FitReport` saved in a checkpoint's config.json (None when the model was saved untrained)."""
    fit = meta.get("fit")
    if not fit:
        return None
    return FitReport(**{**fit, "history": [tuple(h) for h in fit.get("history", [])]})


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")


def left_pad(histories, max_len: int) -> np.ndarray:
    """Per-user item arrays -> (n, max_len) int64, the last ``max_len`` items right-aligned, 0 = padding.

    Right-aligned so that the most recent item always sits at the last position, which is where the
    sequence models read the user's state."""
    out = np.zeros((len(histories), max_len), np.int64)
    for r, h in enumerate(histories):
        h = np.asarray(h)[-max_len:]
        if len(h):
            out[r, max_len - len(h):] = h
    return out

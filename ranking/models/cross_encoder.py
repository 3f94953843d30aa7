"""The fine stage's model: a transformer cross-encoder reads "[CLS] query [SEP] document [SEP]" and
scores the pair; `funnel.ranking.serving.fine` runs it on the coarse ranker's top few candidates.

The model is a `modeling_funnel_ce.FunnelCrossEncoder`: a `BertForSequenceClassification(num_labels=1)`,
by default with its head over mean-pooled token states (`ce_model`; ``fine.pooling``), initialised
from a backbone of `backbone` (MiniLM for real use, the tiny random config for tests), saved with
``save_pretrained`` (safetensors) and loaded only through `load_cross_encoder` / `load_model`, which
also rebuild pruned models whose layers keep different numbers of heads.

Files of a cross-encoder folder (``HOME/models/cross-encoder/``)
-----------------------------------------------------------------
- ``config.json`` (``model_type`` ``funnel-cross-encoder``, ``auto_map``, ``funnel_pooling``, for a pruned
  model ``funnel_heads_kept`` / ``funnel_intermediate_sizes``) + ``model.safetensors``: the Hugging
  Face model (one logit per pair);
- ``modeling_funnel_ce.py``: the model class, so that
  ``AutoModelForSequenceClassification.from_pretrained(DIR, trust_remote_code=True)`` and
  ``sentence_transformers.CrossEncoder(DIR, trust_remote_code=True)`` give Funnel's scores;
- tokenizer files (``tokenizer.json``, ``vocab.txt``, ...): MiniLM's WordPiece vocabulary;
- ``funnel_meta.json``: ``format_version`` (1), ``max_length``, the training config and log summary.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from funnel.core.device import resolve_device
from funnel.core.errors import InputError
from funnel.ranking.models.backbone import TOKENIZER_LOCK, load_backbone, load_tokenizer, model_folder
from funnel.ranking.models.ce_model import ST_CONFIG, config_from_dict, new_config, saved_config
from funnel.ranking.models.modeling_funnel_ce import FunnelCrossEncoder
from funnel.ranking.models.quantize import check_cpu_dtype, quantize_int8

log = logging.getLogger(__name__)

META = "funnel_meta.json"
FORMAT_VERSION = 1


def build_cross_encoder(backbone: str | Path = "minilm", *, seed: int = 0, pooling: str = "mean"):
    """A new `FunnelCrossEncoder` (one logit) whose encoder carries the backbone's weights.

    `pooling` ("mean" or "cls", see `funnel.ranking.models.ce_model`) is recorded in the config. The
    classification head (and the pooler, when the backbone has none) starts random.
    """
    import torch

    encoder = load_backbone(backbone, seed=seed)
    config = new_config(encoder.config, pooling)
    torch.manual_seed(seed)
    model = FunnelCrossEncoder(config)
    missing, unexpected = model.bert.load_state_dict(encoder.state_dict(), strict=False)
    if unexpected or any(not k.startswith("pooler.") for k in missing):
        raise InputError(f"backbone {backbone}: weights do not fit a BERT encoder "
                         f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    return model


def pair_text(title: str, text: str) -> str:
    """The document side of a pair: title and body, as the cross-encoder was trained on."""
    return f"{title}. {text}" if title else text


@dataclass
class CrossEncoder:
    """A loaded cross-encoder on a device: `score(query, docs)` -> float32 (n,)."""
    model: object  # BertForSequenceClassification, eval mode, on `device`
    tokenizer: object
    device: object  # torch.device
    dtype: object  # torch.dtype used for inference
    max_length: int = 256

    def score(self, query: str, docs: list[str], batch_size: int = 32) -> np.ndarray:
        """Relevance logits of (query, doc) pairs, in the docs' order."""
        return self.score_pairs([query] * len(docs), docs, batch_size)

    def score_pairs(self, queries: list[str], docs: list[str], batch_size: int = 32) -> np.ndarray:
        """Relevance logits of (queries[i], docs[i]) pairs, in their order: float32 (n,). Pairs of
        several queries in one call share batches (`funnel.ranking.serving.batching`)."""
        import torch

        out = np.zeros(len(docs), dtype=np.float32)
        if not docs:
            return out
        # Sort by length so a batch pads to similar lengths (less wasted compute), then restore order.
        order = np.argsort([-(len(q) + len(d)) for q, d in zip(queries, docs)], kind="stable")
        with torch.inference_mode():
            for start in range(0, len(docs), batch_size):
                idx = order[start:start + batch_size]
                with TOKENIZER_LOCK:
                    enc = self.tokenizer([queries[i] for i in idx], [docs[i] for i in idx], truncation="only_second",
                                         max_length=self.max_length, padding=True, return_tensors="pt")
                enc = {k: v.to(self.device) for k, v in enc.items()}
                with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.device.type == "cuda"):
                    logits = self.model(**enc).logits  # (batch, 1)
                out[idx] = logits[:, 0].float().cpu().numpy()
        return out


def read_meta(path: str | Path) -> dict:
    meta_file = Path(path) / META
    return json.loads(meta_file.read_text(encoding="utf-8")) if meta_file.exists() else {}


def load_cross_encoder(path: str | Path, device: str = "auto", *, dtype: str = "auto",
                       max_length: int | None = None, cpu_dtype: str = "fp32") -> CrossEncoder:
    """The one loader of a cross-encoder folder (or ``"tiny"``: a random tiny model for tests).

    ``device``/``dtype`` go through `funnel.core.device.resolve_device` (fp16/bf16 on a GPU, fp32 on CPU).
    ``cpu_dtype`` "int8": on CPU, the Linear layers dynamically quantised (`funnel.ranking.models.quantize`).
    ``max_length`` defaults to the one the model was trained with.
    """

    check_cpu_dtype(cpu_dtype)

    dev, dt = resolve_device(device, dtype)
    if str(path) == "tiny":
        model, meta = build_cross_encoder("tiny"), {}
    else:
        path = Path(path)
        model = load_model(path)
        meta = read_meta(path)
    if dev.type == "cuda":
        model = model.to(dtype=dt)  # weights in half precision: half the memory traffic
    model = model.to(dev).eval()
    if dev.type == "cpu" and cpu_dtype == "int8":
        model = quantize_int8(model)
    tokenizer = load_tokenizer(path)
    return CrossEncoder(model, tokenizer, dev, dt, max_length or int(meta.get("max_length", 256)))


def load_model(path: str | Path):
    """The `FunnelCrossEncoder` of a cross-encoder folder (float32, eval mode).

    Reads Funnel's format and folders saved before it (stock `BertForSequenceClassification`, with or
    without ``funnel_pooling``); pruned models get their per-layer shapes from the config before the
    weights load. Every tensor must fit (a checkpoint may omit the pooler a mean-pooled head never used).
    """
    from safetensors.torch import load_file

    path = model_folder(path, "a cross-encoder", "train one with `funnel train cross-encoder`")
    config = saved_config(path)
    weights = path / "model.safetensors"
    if not weights.exists():
        raise InputError(f"{path}: no model.safetensors (a cross-encoder folder holds config.json, "
                         f"model.safetensors and the tokenizer files)")
    model = FunnelCrossEncoder(config)
    state = {k: v.float() for k, v in load_file(str(weights)).items()}  # fp16 copies from a GPU machine too
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if ".pooler." not in f".{k}"]
    if missing or unexpected:
        raise InputError(f"{weights}: weights do not fit the shapes in config.json "
                         f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    return model.float().eval()


def as_funnel_cross_encoder(model):
    """`model` as a `FunnelCrossEncoder` (same weights): a stock `BertForSequenceClassification`, pruned
    or not, becomes one with ``cls`` pooling, so every saved cross-encoder has one format."""
    if isinstance(model, FunnelCrossEncoder):
        return model
    if not hasattr(model, "bert") or not hasattr(model, "classifier"):
        raise InputError(f"save_cross_encoder: expected a BERT sequence classifier, got {type(model).__name__}")
    out = FunnelCrossEncoder(config_from_dict(model.config.to_dict()))
    out.load_state_dict(model.state_dict(), strict=True)
    return out.to(next(model.parameters()).device).train(model.training)


def save_cross_encoder(model, tokenizer, out_dir: str | Path, meta: dict) -> Path:
    """Save model (safetensors, with `modeling_funnel_ce.py` for other tools), tokenizer and
    ``funnel_meta.json`` into `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = as_funnel_cross_encoder(model)
    model.config.sentence_transformers = dict(ST_CONFIG)
    model.save_pretrained(str(out), safe_serialization=True)  # copies modeling_funnel_ce.py, writes auto_map
    tokenizer.save_pretrained(str(out))
    (out / META).write_text(json.dumps({"format_version": FORMAT_VERSION, **meta}, indent=2), encoding="utf-8")
    return out

"""The cross-encoder's configuration: pooling, the Hugging Face config of a new or saved model, and
which parameters form its head. The model class itself is `modeling_funnel_ce.FunnelCrossEncoder`
(a file of its own, copied into every saved model so that other tools load it).

Pooling (``fine.pooling``, recorded as ``funnel_pooling`` in config.json):

- ``"mean"`` (the default for new models): the head over the mean of the last layer's token states,
  padding excluded. MiniLM was trained as a sentence encoder through mean pooling, so its [CLS] state
  carries little and a [CLS] head starts from near-constant scores; the mean starts from features
  that already vary with the text (`benchmarks/results/logs/train_cross_encoder.jsonl`).
- ``"cls"``: BERT's pooler on the [CLS] state, as `transformers.BertForSequenceClassification`
  (also what models saved before pooling was recorded use).
"""
from __future__ import annotations

import json
from pathlib import Path

from funnel.core.errors import InputError
from funnel.ranking.models.modeling_funnel_ce import POOLINGS, FunnelCrossEncoderConfig

POOLING_KEY = "funnel_pooling"
# ST's CrossEncoder applies a sigmoid to one-label models unless told otherwise: Funnel scores are logits
ST_CONFIG = {"activation_fn": "torch.nn.modules.linear.Identity"}
# config.json keys that name a class or format rather than describe the network
_NOT_ARCHITECTURE = ("model_type", "architectures", "auto_map", "transformers_version", "_name_or_path",
                     "sentence_transformers")
LEGACY_ARCHITECTURES = ("BertForSequenceClassification", "MeanPoolBertForSequenceClassification")


def check_pooling(pooling: str) -> str:
    if pooling not in POOLINGS:
        raise InputError(f"fine.pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
    return pooling


def new_config(backbone_config, pooling: str) -> FunnelCrossEncoderConfig:
    """A one-logit cross-encoder config over `backbone_config`'s BERT encoder."""
    fields = {k: v for k, v in backbone_config.to_dict().items() if k not in _NOT_ARCHITECTURE}
    config = FunnelCrossEncoderConfig(funnel_pooling=check_pooling(pooling), **fields)
    config.num_labels = 1
    config.problem_type = "regression"  # one logit; the loss is computed by the trainer anyway
    config.sentence_transformers = dict(ST_CONFIG)
    return config


def saved_config(path: Path) -> FunnelCrossEncoderConfig:
    """The config of a saved cross-encoder: Funnel's own format, or a folder saved before it (a stock
    `BertForSequenceClassification`, with or without ``funnel_pooling``; pruned ones too)."""
    config_file = path / "config.json"
    try:
        raw = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{config_file}: cannot read the model config ({exc})") from None
    archs = set(raw.get("architectures") or [])
    if raw.get("model_type") != FunnelCrossEncoderConfig.model_type and not archs & set(LEGACY_ARCHITECTURES):
        raise InputError(f"{path}: not a cross-encoder (config.json names {sorted(archs) or raw.get('model_type')}, "
                         f"expected a Funnel cross-encoder or BertForSequenceClassification)")
    try:
        return config_from_dict(raw)
    except ValueError as exc:
        raise InputError(f"{config_file}: {exc}") from None


def config_from_dict(raw: dict) -> FunnelCrossEncoderConfig:
    """A Funnel cross-encoder config from a BERT config's dict (a stock one reads as ``cls`` pooling)."""
    fields = {k: v for k, v in raw.items() if k not in _NOT_ARCHITECTURE}
    fields.setdefault(POOLING_KEY, "cls")  # saved before pooling was recorded: stock BERT
    fields[POOLING_KEY] = fields[POOLING_KEY] or "cls"
    config = FunnelCrossEncoderConfig(**fields)
    config.sentence_transformers = dict(ST_CONFIG)
    return config


def head_parameters(model) -> list:
    """The trainable parameters outside BERT's embeddings and encoder layers: the pooler and the
    classifier, which start (partly) random and train at ``fine.head_learning_rate``."""
    return [p for n, p in model.named_parameters() if p.requires_grad
            and not n.startswith(("bert.encoder.", "bert.embeddings."))]

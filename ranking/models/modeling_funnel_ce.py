"""Funnel's cross-encoder as a Hugging Face model: `FunnelCrossEncoderConfig` + `FunnelCrossEncoder`.

A `BertForSequenceClassification` (one logit per pair) with two things stock BERT cannot express:

- ``funnel_pooling``: the head reads the masked mean of the last layer's token states (``"mean"``,
  Funnel's default: MiniLM was trained as a mean-pooled sentence encoder, so its ``[CLS]`` state
  carries little) or BERT's ``[CLS]`` pooler (``"cls"``, stock behaviour);
- ``funnel_heads_kept`` / ``funnel_intermediate_sizes``: per-layer attention heads and FFN widths of
  a pruned model (``funnel prune``), so layers may differ in shape.

Why a file of its own: `save_cross_encoder` copies this file into every saved model folder and points
``config.json``'s ``auto_map`` at it, with ``model_type`` ``funnel-cross-encoder``. Other tools then
load the model with the scores Funnel computes, given ``trust_remote_code=True``::

    AutoModelForSequenceClassification.from_pretrained(path, trust_remote_code=True)
    sentence_transformers.CrossEncoder(path, trust_remote_code=True)  # raw logits: no sigmoid

Without ``trust_remote_code`` they refuse with an error instead of silently loading a stock BERT
whose ``[CLS]`` head gives other scores. Hence this file imports only torch and transformers.
"""
from __future__ import annotations

from torch import nn
from transformers import BertConfig, BertForSequenceClassification
from transformers.modeling_outputs import SequenceClassifierOutput

POOLINGS = ("cls", "mean")


class FunnelCrossEncoderConfig(BertConfig):
    model_type = "funnel-cross-encoder"

    def __init__(self, funnel_pooling: str = "mean", funnel_heads_kept=None, funnel_intermediate_sizes=None,
                 **kwargs):
        super().__init__(**kwargs)
        if funnel_pooling not in POOLINGS:
            raise ValueError(f"funnel_pooling must be one of {POOLINGS}, got {funnel_pooling!r}")
        self.funnel_pooling = funnel_pooling
        self.funnel_heads_kept = funnel_heads_kept  # per layer: original head indices kept (None: all)
        self.funnel_intermediate_sizes = funnel_intermediate_sizes  # per layer: FFN width (None: intermediate_size)


def shrink_to_structure(model: nn.Module, config) -> None:
    """Give a freshly built BERT the per-layer head counts and FFN widths `config` records.

    Only shapes matter (the weights are loaded afterwards): the Linear layers are replaced by ones of
    the recorded sizes and each attention module's head count is set to match.
    """
    kept = getattr(config, "funnel_heads_kept", None)
    sizes = getattr(config, "funnel_intermediate_sizes", None)
    layers = model.bert.encoder.layer
    for name, rec in (("funnel_heads_kept", kept), ("funnel_intermediate_sizes", sizes)):
        if rec is not None and len(rec) != len(layers):
            raise ValueError(f"config {name} names {len(rec)} layers, the model has {len(layers)}")
    hidden = config.hidden_size
    for i, layer in enumerate(layers):
        if kept is not None:
            attn = layer.attention.self
            width = len(kept[i]) * attn.attention_head_size
            attn.query = nn.Linear(hidden, width)
            attn.key = nn.Linear(hidden, width)
            attn.value = nn.Linear(hidden, width)
            layer.attention.output.dense = nn.Linear(width, hidden)
            attn.num_attention_heads = len(kept[i])
            attn.all_head_size = width
        if sizes is not None:
            layer.intermediate.dense = nn.Linear(hidden, int(sizes[i]))
            layer.output.dense = nn.Linear(int(sizes[i]), hidden)


class FunnelCrossEncoder(BertForSequenceClassification):
    """`BertForSequenceClassification` with the pooling and per-layer shapes its config records."""
    config_class = FunnelCrossEncoderConfig

    def __init__(self, config):
        super().__init__(config)
        shrink_to_structure(self, config)

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, output_attentions=None,
                output_hidden_states=None, labels=None, **unused) -> SequenceClassifierOutput:
        if getattr(self.config, "funnel_pooling", "cls") == "cls":
            return super().forward(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                                   output_attentions=output_attentions, output_hidden_states=output_hidden_states)
        out = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                        output_attentions=output_attentions, output_hidden_states=output_hidden_states)
        h = out.last_hidden_state  # (batch, seq, hidden)
        if attention_mask is None:
            pooled = h.mean(1)
        else:
            m = attention_mask.unsqueeze(-1).to(h.dtype)  # (batch, seq, 1)
            pooled = (h * m).sum(1) / m.sum(1).clamp(min=1)
        logits = self.classifier(self.dropout(pooled))  # (batch, num_labels)
        return SequenceClassifierOutput(logits=logits, hidden_states=out.hidden_states, attentions=out.attentions)


FunnelCrossEncoderConfig.register_for_auto_class()
FunnelCrossEncoder.register_for_auto_class("AutoModelForSequenceClassification")

__all__ = ["FunnelCrossEncoderConfig", "FunnelCrossEncoder", "shrink_to_structure"]

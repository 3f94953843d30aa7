"""Attention heads and FFN neurons of a BERT: masking them (for importance scores) and slicing them out.
Feeds `funnel.ranking.training.prune` (which decides what to remove) and every loader of a pruned model.

transformers 5 removed ``head_mask`` and ``prune_heads`` from BERT, so Funnel owns both halves:

- `UnitMask` multiplies each head's context vector (and optionally each FFN neuron's activation) by a
  mask value through forward hooks. A mask of ones changes nothing; its gradient is the head's
  sensitivity (Michel et al., 2019); a zero removes the head's contribution exactly.
- `prune_heads` / `prune_ffn` really shrink the matrices with
  `transformers.pytorch_utils.prune_linear_layer`: the rows of Q, K, V of a removed head and the
  matching columns of the attention-output dense layer (FFN: rows of ``intermediate.dense`` and
  columns of ``output.dense``). Slicing gives the same outputs as masking the same units with zeros.
- `load_pruned` rebuilds a model whose layers keep different numbers of heads and FFN neurons from
  its config, then loads the safetensors weights.

Works on any model whose ``base_model`` is a `transformers.BertModel` (the cross-encoder's
`BertForSequenceClassification`, the dual encoder's `BertModel`).

Config keys a pruned model records (``config.json``)
---------------------------------------------------
- ``funnel_heads_kept``: list per layer of the *original* head indices still present, in order;
- ``funnel_intermediate_sizes``: list per layer of the FFN width (``intermediate_size`` when unpruned);
- ``funnel_prune_format``: 1.
A model without these keys is unpruned and loads as usual.
"""
from __future__ import annotations

import json
from pathlib import Path

from funnel.core.errors import InputError
from funnel.ranking.models.backbone import model_folder
from funnel.ranking.models.modeling_funnel_ce import FunnelCrossEncoder, FunnelCrossEncoderConfig


PRUNE_FORMAT = 1
HEADS_KEY = "funnel_heads_kept"
FFN_KEY = "funnel_intermediate_sizes"


def encoder_layers(model) -> list:
    """The `BertLayer`s of a BERT model (bare `BertModel` or one with a task head)."""
    base = getattr(model, "base_model", model)
    try:
        return list(base.encoder.layer)
    except AttributeError:
        raise InputError(f"{type(model).__name__}: not a BERT-style model (no encoder.layer)") from None


def heads_per_layer(model) -> list[int]:
    return [layer.attention.self.num_attention_heads for layer in encoder_layers(model)]


def ffn_sizes(model) -> list[int]:
    return [layer.intermediate.dense.out_features for layer in encoder_layers(model)]


def heads_kept(model) -> list[list[int]]:
    """Original indices of the heads each layer still has (all of them for an unpruned model)."""
    kept = getattr(model.config, HEADS_KEY, None)
    if kept is None:
        return [list(range(n)) for n in heads_per_layer(model)]
    return [list(k) for k in kept]


def is_pruned(config) -> bool:
    return getattr(config, HEADS_KEY, None) is not None or getattr(config, FFN_KEY, None) is not None


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


class UnitMask:
    """Forward hooks scaling each attention head's output and each FFN neuron's activation.

    ``heads[l]`` is a float tensor (n_heads_l,), ``ffn[l]`` a float tensor (intermediate_l,); leave
    either as None to not touch that part. Create the tensors with ``requires_grad=True`` and
    backpropagate a loss to read the sensitivity of the loss to each unit. Use as a context manager
    (or call `remove`): the hooks come off on exit.
    """

    def __init__(self, model, heads=None, ffn=None):
        self.handles = []
        layers = encoder_layers(model)
        for i, layer in enumerate(layers):
            attn = layer.attention.self
            if heads is not None:
                if heads[i].shape != (attn.num_attention_heads,):
                    raise ValueError(f"layer {i}: head mask has shape {tuple(heads[i].shape)}, "
                                     f"the layer has {attn.num_attention_heads} heads")
                self.handles.append(attn.register_forward_hook(_head_hook(heads[i], attn.attention_head_size)))
            if ffn is not None:
                if ffn[i].shape != (layer.intermediate.dense.out_features,):
                    raise ValueError(f"layer {i}: FFN mask has shape {tuple(ffn[i].shape)}, "
                                     f"the layer has {layer.intermediate.dense.out_features} neurons")
                self.handles.append(layer.intermediate.register_forward_hook(_ffn_hook(ffn[i])))

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


def _head_hook(mask, head_size: int):
    def hook(module, args, output):
        context = output[0]  # (batch, seq, n_heads * head_size): heads are contiguous blocks
        scale = mask.to(context.dtype).repeat_interleave(head_size)  # (n_heads * head_size,)
        return (context * scale, *output[1:])
    return hook


def _ffn_hook(mask):
    def hook(module, args, output):
        return output * mask.to(output.dtype)  # (batch, seq, intermediate) after the activation
    return hook


def _kept_index(n: int, remove, what: str, layer: int):
    import torch

    remove = sorted(set(int(h) for h in remove))
    if any(h < 0 or h >= n for h in remove):
        raise ValueError(f"layer {layer}: {what} indices {remove} out of range 0..{n - 1}")
    keep = [h for h in range(n) if h not in set(remove)]
    if not keep:
        raise ValueError(f"layer {layer}: cannot remove all {n} {what}s (keep at least one)")
    return torch.tensor(keep, dtype=torch.long)


def prune_heads(model, remove: dict[int, list[int]]):
    """Physically remove heads, given as ``{layer: [head index in the layer's current numbering]}``.

    Slices Q, K, V rows and the attention-output dense columns, updates the modules' head counts and
    records the original indices kept in ``config.funnel_heads_kept``. Returns the model.
    """
    from transformers.pytorch_utils import prune_linear_layer

    layers = encoder_layers(model)
    kept = heads_kept(model)
    for i, heads in remove.items():
        if not heads:
            continue
        attn = layers[i].attention.self
        size = attn.attention_head_size
        keep_heads = _kept_index(attn.num_attention_heads, heads, "head", i)
        # Row index of every dimension of every kept head: head h owns rows h*size .. h*size+size-1.
        index = (keep_heads[:, None] * size + _arange(size)[None, :]).reshape(-1)
        attn.query = prune_linear_layer(attn.query, index, dim=0)
        attn.key = prune_linear_layer(attn.key, index, dim=0)
        attn.value = prune_linear_layer(attn.value, index, dim=0)
        out = layers[i].attention.output
        out.dense = prune_linear_layer(out.dense, index, dim=1)
        attn.num_attention_heads = len(keep_heads)
        attn.all_head_size = attn.num_attention_heads * size
        kept[i] = [kept[i][h] for h in keep_heads.tolist()]
    _record(model, kept, ffn_sizes(model))
    return model


def prune_ffn(model, remove: dict[int, list[int]]):
    """Physically remove FFN neurons ``{layer: [neuron index]}``: rows of ``intermediate.dense``,
    columns of ``output.dense``; records the new widths in ``config.funnel_intermediate_sizes``."""
    from transformers.pytorch_utils import prune_linear_layer

    layers = encoder_layers(model)
    for i, neurons in remove.items():
        if len(neurons) == 0:
            continue
        layer = layers[i]
        keep = _kept_index(layer.intermediate.dense.out_features, neurons, "FFN neuron", i)
        layer.intermediate.dense = prune_linear_layer(layer.intermediate.dense, keep, dim=0)
        layer.output.dense = prune_linear_layer(layer.output.dense, keep, dim=1)
    _record(model, heads_kept(model), ffn_sizes(model))
    return model


def _arange(n: int):
    import torch

    return torch.arange(n, dtype=torch.long)


def _record(model, kept: list[list[int]], sizes: list[int]) -> None:
    config = model.config
    setattr(config, HEADS_KEY, [list(map(int, k)) for k in kept])
    setattr(config, FFN_KEY, [int(s) for s in sizes])
    config.funnel_prune_format = PRUNE_FORMAT


def apply_structure(model, config) -> None:
    """Shrink a freshly built (unpruned) model to the per-layer shapes `config` records.

    Only shapes matter here (weights are loaded afterwards), so the first heads/neurons are kept.
    """
    kept = getattr(config, HEADS_KEY, None)
    sizes = getattr(config, FFN_KEY, None)
    layers = encoder_layers(model)
    if kept is not None and len(kept) != len(layers) or sizes is not None and len(sizes) != len(layers):
        raise InputError(f"config: {HEADS_KEY}/{FFN_KEY} name {len(kept or sizes)} layers, "
                         f"the model has {len(layers)}")
    for key in (HEADS_KEY, FFN_KEY):  # start from an unpruned record; prune_* rewrite both keys
        setattr(model.config, key, None)
    if kept is not None:
        prune_heads(model, {i: list(range(len(k), layer.attention.self.num_attention_heads))
                            for i, (k, layer) in enumerate(zip(kept, layers))})
    if sizes is not None:
        prune_ffn(model, {i: list(range(int(s), layer.intermediate.dense.out_features))
                          for i, (s, layer) in enumerate(zip(sizes, layers))})
    _record(model, kept if kept is not None else heads_kept(model), ffn_sizes(model))


def load_pruned(path: str | Path, model_class=None):
    """Load a model folder saved by ``save_pretrained`` whose layers may have been pruned.

    ``model_class`` defaults to the class named in ``config.architectures``. Unpruned folders load
    through ``from_pretrained`` as usual; pruned ones are built from the config, shrunk to the
    recorded shapes, and get their weights from ``model.safetensors`` (strict: every tensor must fit).
    """
    import torch
    import transformers
    from safetensors.torch import load_file
    from transformers import AutoConfig

    path = model_folder(path)
    if json.loads((path / "config.json").read_text(encoding="utf-8")).get("model_type") == FunnelCrossEncoderConfig.model_type:
        # Funnel's cross-encoder records its per-layer shapes itself (`modeling_funnel_ce`)
        return FunnelCrossEncoder.from_pretrained(str(path), dtype=torch.float32).eval()
    config = AutoConfig.from_pretrained(str(path))
    if model_class is None:
        arch = (config.architectures or ["BertModel"])[0]
        model_class = getattr(transformers, arch, None)
        if model_class is None:
            raise InputError(f"{path / 'config.json'}: unknown architecture {arch!r}")
    if not is_pruned(config):  # float32 even from an fp16 file (a copy carried back from a GPU machine)
        return model_class.from_pretrained(str(path), dtype=torch.float32)
    weights = path / "model.safetensors"
    if not weights.exists():
        raise InputError(f"{path}: pruned model without model.safetensors")
    model = model_class(config)
    apply_structure(model, config)
    state = load_file(str(weights))
    missing, unexpected = model.load_state_dict(state, strict=False)
    # Checkpoints of a task model sometimes omit the pooler it never used; anything else is an error.
    missing = [k for k in missing if ".pooler." not in f".{k}"]
    if missing or unexpected:
        raise InputError(f"{weights}: weights do not fit the pruned shapes in config.json "
                         f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    return model.eval()


def describe(model) -> dict:
    """A JSON-able summary: heads and FFN width per layer, kept head indices, parameter count."""
    return {"heads_per_layer": heads_per_layer(model), "heads_total": sum(heads_per_layer(model)),
            "heads_kept": heads_kept(model), "ffn_sizes": ffn_sizes(model),
            "parameters": count_parameters(model)}


def read_structure(path: str | Path) -> dict:
    """Heads kept / FFN sizes a saved model's config.json records (without loading weights)."""
    config = json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
    return {"heads_kept": config.get(HEADS_KEY), "ffn_sizes": config.get(FFN_KEY)}

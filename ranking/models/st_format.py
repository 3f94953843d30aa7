"""Sentence-transformers folders: what a dual encoder is saved as, and how any such folder is read.

Writing goes through sentence-transformers itself (`save_sentence_transformer`), so the folder is
what ``SentenceTransformer(path)`` expects from the installed version:

- shared towers: ``modules.json`` = Transformer (weights at the root: also a plain Hugging Face BERT
  folder) -> ``1_Pooling`` -> ``2_Normalize``, and ``config_sentence_transformers.json`` with the
  ``query`` / ``document`` prompts;
- two towers: one ``Router`` module (``router_config.json``) whose ``query`` route reads
  ``query_0_Transformer/`` and whose ``document`` route (the default of ``encode``) reads
  ``document_0_Transformer/``; ``encode_query`` / ``encode_document`` pick the tower.

Reading (`read_sentence_transformer`) parses those JSON files without importing sentence-transformers,
for Funnel's folders and other people's (e.g. a BGE-style model: ``[CLS]`` pooling, a query prompt),
in the layout of sentence-transformers 2 to 6: the pooling mode, whether vectors are normalised,
the prompts and each tower's folder and maximum length.
"""
from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from funnel.core.errors import InputError

POOLINGS = ("mean", "cls", "max")
# prompt names other libraries use for the document side
_DOC_PROMPT_NAMES = ("document", "passage", "doc", "corpus")


@dataclass(frozen=True)
class TowerSpec:
    folder: Path  # a Hugging Face model folder (config.json + weights)
    pooling: str = "mean"
    normalize: bool = True
    max_length: int | None = None


@dataclass(frozen=True)
class StSpec:
    query: TowerSpec
    document: TowerSpec
    query_prompt: str = ""
    doc_prompt: str = ""

    @property
    def shared(self) -> bool:
        return self.query.folder == self.document.folder


def _json(path: Path) -> dict | list:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read sentence-transformers metadata ({exc})") from None


def _pooling_mode(cfg: dict, where: Path) -> str:
    mode = cfg.get("pooling_mode")  # sentence-transformers 6
    if isinstance(mode, list):
        mode = mode[0] if len(mode) == 1 else None
    if mode is None:  # sentence-transformers 2-5: one boolean per mode
        flags = {"cls": cfg.get("pooling_mode_cls_token"), "mean": cfg.get("pooling_mode_mean_tokens"),
                 "max": cfg.get("pooling_mode_max_tokens")}
        on = [k for k, v in flags.items() if v]
        mode = on[0] if len(on) == 1 else None
    if mode in ("cls_token", "mean_tokens", "max_tokens"):
        mode = mode.split("_")[0]
    if mode not in POOLINGS:
        raise InputError(f"{where}: pooling {cfg} is not one Funnel serves (one of {', '.join(POOLINGS)})")
    return mode


def _max_length(folder: Path) -> int | None:
    for name, key in (("sentence_bert_config.json", "max_seq_length"), ("tokenizer_config.json", "model_max_length")):
        f = folder / name
        if f.exists():
            value = _json(f).get(key)
            if isinstance(value, int) and 0 < value < 100_000:
                return value
    return None


def _tower(root: Path, entries: list[tuple[str, str]]) -> TowerSpec:
    """A route's modules, as (type, folder) pairs, -> TowerSpec."""
    folder, pooling, normalize = None, "mean", False
    for kind, path in entries:
        sub = root / path if path else root
        if kind.endswith("Transformer"):
            folder = sub
        elif kind.endswith("Pooling"):
            pooling = _pooling_mode(_json(sub / "config.json"), sub / "config.json")
        elif kind.endswith("Normalize"):
            normalize = True
        elif not kind.endswith(("Dropout", "LayerNorm")):
            raise InputError(f"{root}: module {kind} is not one Funnel serves (Transformer, Pooling, Normalize)")
    if folder is None:
        raise InputError(f"{root}: no Transformer module in modules.json")
    return TowerSpec(folder, pooling, normalize, _max_length(folder))


def is_sentence_transformer(path: str | Path) -> bool:
    return (Path(path) / "modules.json").exists()


def read_sentence_transformer(path: str | Path) -> StSpec:
    """The towers, pooling, normalisation and prompts a sentence-transformers folder declares."""
    root = Path(path)
    modules = _json(root / "modules.json")
    entries = [(m.get("type", ""), m.get("path", "")) for m in modules]
    if len(entries) == 1 and entries[0][0].endswith("Router"):
        sub = root / entries[0][1] if entries[0][1] else root
        rc = _json(sub / "router_config.json")
        routes = {name: _tower(sub, [(rc["types"][m], m) for m in mods]) for name, mods in rc["structure"].items()}
        default = rc.get("parameters", {}).get("default_route") or next(iter(routes))
        query = routes.get("query", routes[default])
        document = routes.get("document", routes[default])
    else:
        query = document = _tower(root, entries)
    prompts = {}
    cfg_file = root / "config_sentence_transformers.json"
    if cfg_file.exists():
        prompts = _json(cfg_file).get("prompts") or {}
    doc_prompt = next((prompts[n] for n in _DOC_PROMPT_NAMES if prompts.get(n)), "")
    return StSpec(query, document, prompts.get("query", "") or "", doc_prompt)


def save_sentence_transformer(query_tower, doc_tower, tokenizer, out: Path, *, pooling: str, query_max_len: int,
                              doc_max_len: int, query_prompt: str = "", doc_prompt: str = "") -> None:
    """Write towers (transformers models; ``doc_tower`` None = shared) as a sentence-transformers folder."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Normalize, Router, Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    with tempfile.TemporaryDirectory(prefix="funnel-st-") as tmp:
        def route(model, name: str, max_len: int) -> list:
            model.save_pretrained(f"{tmp}/{name}", safe_serialization=True)
            tokenizer.save_pretrained(f"{tmp}/{name}")
            t = Transformer(f"{tmp}/{name}")
            t.max_seq_length = max_len
            return [t, Pooling(t.get_embedding_dimension(), pooling), Normalize()]

        prompts = {"query": query_prompt, "document": doc_prompt}
        if doc_tower is None:
            modules = route(query_tower, "shared", doc_max_len)
        else:
            modules = [Router.for_query_document(route(query_tower, "query", query_max_len),
                                                 route(doc_tower, "document", doc_max_len))]
        SentenceTransformer(modules=modules, device="cpu", prompts=prompts).save(str(out))

"""Dense recall's model: a dual encoder (bi-encoder) that maps queries and documents to unit vectors,
so relevance is a dot product. Feeds `funnel.index.vectors` (document embeddings, via `funnel embed`),
`funnel.ranking.serving.recall.DenseRecall` (query embeddings) and the ranking funnel's dense-cosine feature / MMR.

- Towers: one shared BERT by default (queries and documents use the same weights, which works best
  with little training data); ``shared=False`` keeps a separate document tower.
- Pooling: the attention-masked mean of the last hidden states (what all-MiniLM-L6-v2 was trained
  with; a loaded sentence-transformers model's own ``cls`` or ``max`` pooling is honoured), then L2
  normalisation, so the dot product is the cosine.
- Prompts: a loaded model's ``query`` / ``document`` prompts (e.g. BGE's query instruction) are
  prepended to the text before tokenizing.
- Text of a document: ``title + ". " + text`` (`doc_text`), truncated to ``doc_max_len`` tokens.

Files (a model folder, written by `save_dual_encoder`, read by `load_dual_encoder`): a
sentence-transformers model (`st_format`: shared towers at the root, or a Router with
``query_0_Transformer/`` and ``document_0_Transformer/``), so that
``SentenceTransformer(DIR).encode_query`` / ``encode_document`` (``encode`` = documents) give
Funnel's vectors, plus
- ``dual_encoder.json``: ``{"format": 2, "kind": "dual-encoder", "shared": bool, "pooling": str,
  "normalize": true, "query_max_len": int, "doc_max_len": int, "dim": int, ...training metadata}``.
Format 1 folders (the query tower at the root, ``doc_tower/`` beside it) still load.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from funnel.core.device import resolve_device
from funnel.core.errors import InputError
from funnel.core.store import DocumentStore
from funnel.index.vectors import AnnSpec, read_manifest, VectorIndexWriter
from funnel.ranking.models.backbone import TOKENIZER_LOCK, load_backbone, load_tokenizer, model_folder
from funnel.ranking.models.st_format import (POOLINGS, is_sentence_transformer, read_sentence_transformer,
                                            save_sentence_transformer)


FORMAT = 2
META_FILE = "dual_encoder.json"


def doc_text(title: str | None, text: str | None) -> str:
    """The text a document is encoded from: its title, then its body."""
    title, text = (title or "").strip(), (text or "").strip()
    if title and text:
        return f"{title}. {text}"
    return title or text


def mean_pool(hidden, mask):
    """Attention-masked mean. hidden: (batch, seq, dim), mask: (batch, seq) -> (batch, dim)."""
    m = mask.unsqueeze(-1).to(hidden.dtype)  # (batch, seq, 1)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)


def pool(hidden, mask, mode: str):
    """(batch, seq, dim) token states -> (batch, dim) by `mode`: "mean", "cls" (first token) or "max"."""
    if mode == "cls":
        return hidden[:, 0]
    if mode == "max":
        masked = hidden.masked_fill(mask.unsqueeze(-1) == 0, float("-inf"))  # padding never wins
        return masked.max(1).values
    return mean_pool(hidden, mask)


def _module_base():
    import torch

    return torch.nn.Module


class DualEncoder(_module_base()):
    """Query and document towers (shared by default) with mean pooling and L2 normalisation.

    Use `encode_queries` / `encode_docs` (or `encode`) for inference: they batch, tokenize, run
    under ``torch.inference_mode()`` and return float32 numpy arrays of shape (n, dim) with unit rows.
    For training, call `embed(batch, tower)` on tokenized batches (keeps the graph).
    """

    def __init__(self, query_tower, tokenizer, *, doc_tower=None, query_max_len: int = 64,
                 doc_max_len: int = 256, pooling: str = "mean", query_prompt: str = "", doc_prompt: str = ""):
        super().__init__()
        if pooling not in POOLINGS:
            raise InputError(f"dual encoder pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
        self.query_tower = query_tower
        self.doc_tower = doc_tower  # None: shared with the query tower
        self.tokenizer = tokenizer
        self.query_max_len = query_max_len
        self.doc_max_len = doc_max_len
        self.pooling = pooling
        self.query_prompt = query_prompt  # prepended to every query (e.g. a BGE-style instruction)
        self.doc_prompt = doc_prompt

    @property
    def shared(self) -> bool:
        return self.doc_tower is None

    @property
    def dim(self) -> int:
        return int(self.query_tower.config.hidden_size)

    @property
    def device(self):
        return next(self.query_tower.parameters()).device

    def tokenize(self, texts: Sequence[str], max_len: int):
        with TOKENIZER_LOCK:
            return self.tokenizer(list(texts), padding=True, truncation=True, max_length=max_len,
                                  return_tensors="pt")

    def embed(self, batch, tower: str = "query"):
        """Tokenized batch -> (batch, dim) unit vectors, with gradients when training."""
        import torch.nn.functional as F

        model = self.query_tower if tower == "query" or self.doc_tower is None else self.doc_tower
        batch = {k: v.to(self.device) for k, v in batch.items()}
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                    token_type_ids=batch.get("token_type_ids"))
        pooled = pool(out.last_hidden_state, batch["attention_mask"], self.pooling)  # (batch, dim)
        return F.normalize(pooled.float(), dim=-1)

    def encode(self, texts: Sequence[str], batch_size: int = 64, device=None, *, kind: str = "doc",
               dtype=None, progress: bool = False) -> np.ndarray:
        """Embed `texts` as documents (``kind="doc"``) or queries (``kind="query"``).

        Returns float32 (len(texts), dim), rows of unit length. ``device`` moves the model first
        (e.g. ``"cuda"``); ``dtype`` (e.g. torch.float16 on GPU) autocasts the forward pass.
        Texts are sorted by length so padding is small; the output keeps the input order.
        """
        import torch
        from tqdm.auto import tqdm

        if device is not None:
            self.to(device)
        max_len = self.doc_max_len if kind == "doc" else self.query_max_len
        tower = "doc" if kind == "doc" else "query"
        prompt = self.doc_prompt if kind == "doc" else self.query_prompt
        texts = [prompt + t for t in texts] if prompt else list(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = np.argsort([-len(t) for t in texts], kind="stable")
        was_training = self.training
        self.eval()
        dev = self.device
        use_autocast = dtype is not None and dev.type == "cuda" and dtype != torch.float32
        try:
            with torch.inference_mode(), torch.autocast(dev.type, dtype=dtype, enabled=use_autocast):
                for start in tqdm(range(0, len(texts), batch_size), desc=f"encode {kind}s", unit="batch",
                                  disable=not progress):
                    idx = order[start:start + batch_size]
                    vecs = self.embed(self.tokenize([texts[i] for i in idx], max_len), tower)
                    out[idx] = vecs.float().cpu().numpy()  # (batch, dim)
        finally:
            self.train(was_training)
        return out

    def encode_queries(self, queries: Sequence[str], batch_size: int = 64, device=None, **kw) -> np.ndarray:
        return self.encode(queries, batch_size, device, kind="query", **kw)

    def encode_docs(self, texts: Sequence[str], batch_size: int = 64, device=None, **kw) -> np.ndarray:
        return self.encode(texts, batch_size, device, kind="doc", **kw)


def build_dual_encoder(backbone: str | Path = "minilm", *, shared: bool = True, query_max_len: int = 64,
                       doc_max_len: int = 256, seed: int = 0) -> DualEncoder:
    """A new dual encoder starting from `backbone` ("minilm", "tiny" or a backbone folder)."""
    import copy

    tower = load_backbone(backbone, seed=seed)
    doc_tower = None if shared else copy.deepcopy(tower)
    return DualEncoder(tower, load_tokenizer(backbone), doc_tower=doc_tower, query_max_len=query_max_len,
                       doc_max_len=doc_max_len)


def save_dual_encoder(model: DualEncoder, out_dir: str | Path, meta: dict | None = None) -> Path:
    """Write the model folder (see the module docstring). Returns the folder."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_sentence_transformer(model.query_tower, model.doc_tower, model.tokenizer, out, pooling=model.pooling,
                              query_max_len=model.query_max_len, doc_max_len=model.doc_max_len,
                              query_prompt=model.query_prompt, doc_prompt=model.doc_prompt)
    info = {"format": FORMAT, "kind": "dual-encoder", "shared": model.shared, "pooling": model.pooling,
            "normalize": True, "query_max_len": model.query_max_len, "doc_max_len": model.doc_max_len,
            "dim": model.dim, **(meta or {})}
    (out / META_FILE).write_text(json.dumps(info, indent=2, default=str), encoding="utf-8")
    return out


def read_meta(path: str | Path) -> dict:
    p = Path(path) / META_FILE
    if not p.exists():
        return {}
    return json.loads(p.read_text(encoding="utf-8"))


def _hub_folder(name: str) -> Path:
    """A hub id ("org/model") downloaded to the local cache: only when the user allows network access
    (Funnel runs with HF_HUB_OFFLINE=1 unless it is set otherwise)."""
    import os

    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        raise InputError(f"{name}: no such folder; to fetch it from the Hugging Face hub run with "
                         f"HF_HUB_OFFLINE=0 on a machine that is online")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(name))
    except Exception as exc:  # network, unknown repo, auth: all one message to the user
        raise InputError(f"{name}: cannot fetch from the Hugging Face hub ({exc})") from None


def load_dual_encoder(path: str | Path = "minilm", device: str = "auto") -> DualEncoder:
    """Load a dual encoder: "minilm" (zero-shot all-MiniLM-L6-v2), "tiny", a folder Funnel saved, any
    sentence-transformers folder (its pooling, prompts and towers as it declares them), a plain Hugging
    Face BERT folder (mean pooling, shared towers), or a hub id when the machine is online.

    Lengths come from ``dual_encoder.json`` when present, else from the folder's own maximum (queries:
    at most 64 tokens). The model is put on `device` (`funnel.core.device.resolve_device`).
    """
    dev, _ = resolve_device(device)
    name = str(path)
    if name in ("minilm", "tiny"):
        model = build_dual_encoder(name)
    else:
        p = Path(path)
        if not p.exists() and name.count("/") == 1 and not name.startswith((".", "/")):
            p = _hub_folder(name)
        meta = read_meta(p)
        if meta and meta.get("format", FORMAT) > FORMAT:
            raise InputError(f"{p / META_FILE}: format {meta['format']} is newer than this Funnel reads ({FORMAT})")
        if is_sentence_transformer(p):
            spec = read_sentence_transformer(p)
            doc_tower = None if spec.shared else load_backbone(spec.document.folder)
            model = DualEncoder(load_backbone(spec.query.folder), load_tokenizer(spec.query.folder),
                                doc_tower=doc_tower, pooling=spec.query.pooling,
                                query_prompt=spec.query_prompt, doc_prompt=spec.doc_prompt,
                                query_max_len=int(meta.get("query_max_len") or min(spec.query.max_length or 64, 64)),
                                doc_max_len=int(meta.get("doc_max_len") or spec.document.max_length or 256))
        else:  # format 1, or a plain Hugging Face folder
            p = model_folder(p, "a dual-encoder folder", "train one with `funnel train dual-encoder` or pass 'minilm'")
            doc_tower = load_backbone(p / "doc_tower") if meta.get("shared") is False else None
            model = DualEncoder(load_backbone(p), load_tokenizer(p), doc_tower=doc_tower,
                                query_max_len=int(meta.get("query_max_len", 64)),
                                doc_max_len=int(meta.get("doc_max_len", 256)))
    model.eval()
    return model.to(dev)


def tower_fingerprint(tower) -> str:
    """SHA-1 of a tower's weights: a vector index records its document encoder's, so vectors made by
    another encoder are never mixed in (a query-side fine-tuned model keeps the same document tower)."""
    import hashlib

    h = hashlib.sha1()
    for name, tensor in sorted(tower.state_dict().items()):
        if name.startswith("pooler."):  # unused (mean pooling), and re-initialised when a folder lacks it
            continue
        h.update(name.encode())
        h.update(tensor.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()


def resolve_model_path(config) -> str:
    """The dense model to use: ``dense.model`` if set, else HOME/models/dual-encoder if trained, else "minilm"."""
    if config.dense.model:
        return config.dense.model
    trained = config.paths.dual_encoder
    return str(trained) if (trained / META_FILE).exists() else "minilm"


def embed_store(config, model: str | None = None, *, rebuild: bool = False, progress: bool = True) -> dict:
    """Encode the store's documents into the vector index (``HOME/index/dense``); returns its manifest.

    Incremental by default: only documents stored after the last embedded one (store sequence
    numbers) are encoded and published as a new part. ``rebuild`` re-encodes everything. Refuses to
    mix vectors from a different document encoder (asks for ``--rebuild``).
    """

    dc = config.dense
    name = model or resolve_model_path(config)
    encoder = load_dual_encoder(name, dc.device)
    if not read_meta(name):  # zero-shot or a plain backbone folder: lengths come from the config
        encoder.query_max_len, encoder.doc_max_len = dc.query_max_len, dc.doc_max_len
    doc_hash = tower_fingerprint(encoder.doc_tower if encoder.doc_tower is not None else encoder.query_tower)
    out = config.paths.dense_index
    old = read_manifest(out)
    if old is not None and not rebuild and old.get("meta", {}).get("doc_hash") != doc_hash:
        raise InputError(f"vector index {out} was built with another document encoder "
                         f"({old.get('meta', {}).get('model')!r}); run `funnel embed --rebuild`")
    after = 0 if (old is None or rebuild) else int(old.get("meta", {}).get("last_seq", 0))
    if not config.paths.store.exists():
        raise InputError(f"no document store at {config.paths.store}: ingest or crawl first")
    with DocumentStore(config.paths.store, readonly=True) as store:
        docs = list(store.iter_docs(after_seq=after))

    _, dtype = resolve_device(dc.device, dc.dtype)
    vectors = encoder.encode_docs([doc_text(d.title, d.text) for d in docs], dc.batch_size, dtype=dtype,
                                  progress=progress)
    meta = {"model": str(name), "doc_hash": doc_hash, "doc_max_len": encoder.doc_max_len,
            "query_max_len": encoder.query_max_len,
            "last_seq": max([after] + [int(d.seq) for d in docs if d.seq is not None])}
    writer = VectorIndexWriter(out, ann=AnnSpec.from_config(config.recall))  # the ANN saved with the vectors
    if old is None or rebuild:
        return writer.replace(vectors, [d.doc_id for d in docs], meta)
    return writer.add(vectors, [d.doc_id for d in docs], meta)

"""Local index builder and writer: document store -> segments + manifest. Feeds `funnel.index.searcher`.

An index folder holds immutable segments and one ``manifest.json`` naming the live ones.
Publishing is atomic: a segment is written into ``.tmp-*`` and renamed, then the new
manifest is written to a temporary file and ``os.replace``d over the old one. A reader
therefore sees the old index or the new one, never half of either; a crash mid-build
leaves the previous manifest (and every segment it names) untouched.

Files of an index folder
------------------------
- ``manifest.json``: ``format_version``, ``generation`` (increases on every publish),
  ``analyzer`` (name and settings), ``max_seq`` (the highest store ``seq`` indexed),
  ``segments``: list of ``{"name": "seg-000007", "deletes": "deletes-000009.npy" | null}``.
- ``seg-NNNNNN/``: one segment (see `funnel.index.segments`).
- ``seg-NNNNNN/deletes-GGGGGG.npy``: int32 sorted ordinals of that segment's documents that
  a later segment replaced (written at generation GGGGGG; older ones are garbage).
- ``write.lock``: held (flock) by the one writer.
"""
from __future__ import annotations

import fcntl
import json
import os
import uuid
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from funnel.core.errors import FunnelError
from funnel.core.store import Document
from funnel.index.analyze import Analyzer, check_compatible
from funnel.index.segments import (FORMAT_VERSION, RECOVER, SegmentData, _fsync_dir, merge_segments, save_npy,
                                   postings_from_pairs, read_segment, remove_tree, write_segment)

MANIFEST = "manifest.json"


def doc_text(doc: Document) -> str:
    """The text a document is indexed under: title and body."""
    return f"{doc.title}\n{doc.text}" if doc.title else doc.text


class _Vocab(dict):
    """term -> term id, a new term getting the next id on first sight."""

    def __missing__(self, term: str) -> int:
        self[term] = n = len(self)
        return n


def build_segment(docs: Iterable[Document], analyzer: Analyzer, *, total: int | None = None,
                  progress: bool = True) -> SegmentData:
    """Analyse documents and invert them into one in-memory segment."""
    vocab = _Vocab()
    token_ids: list[np.ndarray] = []
    doc_lens: list[int] = []
    doc_ids: list[str] = []
    seqs: list[int] = []
    for doc in tqdm(docs, total=total, desc="indexing", unit="doc", disable=not progress, mininterval=0.5):
        terms = analyzer(doc_text(doc))
        token_ids.append(np.fromiter(map(vocab.__getitem__, terms), dtype=np.int32, count=len(terms)))
        doc_lens.append(len(terms))
        doc_ids.append(doc.doc_id)
        if doc.seq is not None:
            seqs.append(doc.seq)
    return segment_from_tokens(vocab, token_ids, doc_lens, doc_ids, analyzer,
                               min_seq=min(seqs, default=0), max_seq=max(seqs, default=0))


def segment_from_tokens(vocab: dict[str, int], token_ids: list[np.ndarray], doc_lens: list[int],
                        doc_ids: list[str], analyzer: Analyzer, min_seq: int = 0, max_seq: int = 0) -> SegmentData:
    """Per-document term-id arrays (ids from `vocab`) -> a segment with a sorted term dictionary."""
    terms = sorted(vocab)
    rank = np.empty(len(vocab), dtype=np.int64)  # insertion id -> sorted position
    rank[np.fromiter((vocab[t] for t in terms), dtype=np.int64, count=len(terms))] = np.arange(len(terms))
    lens = np.asarray(doc_lens, dtype=np.int32)
    flat = np.concatenate(token_ids) if token_ids else np.zeros(0, np.int32)
    ords = np.repeat(np.arange(len(doc_ids), dtype=np.int64), lens)
    offsets, p_docs, tfs = postings_from_pairs(rank[flat] if len(flat) else flat.astype(np.int64), ords, len(terms))
    meta = {"analyzer": analyzer.describe(), "min_seq": min_seq, "max_seq": max_seq}
    return SegmentData(terms, offsets, p_docs, tfs, lens, list(doc_ids), meta)


def read_manifest(index_dir: Path, *, damaged_ok: bool = False) -> dict | None:
    """The index's manifest, None if there is none; a damaged one is a FunnelError saying how to
    recover (or None with `damaged_ok`, for the rebuild that replaces it)."""
    path = Path(index_dir) / MANIFEST
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text("utf-8"))
        # a sharded index (`funnel.index.shards`) lists shards, each with its segments
        parts = "shards" if isinstance(manifest, dict) and manifest.get("kind") == "sharded" else "segments"
        if not isinstance(manifest, dict) or not isinstance(manifest.get(parts), list) \
                or not all(isinstance(e, dict) and isinstance(e.get("name"), str) for e in manifest[parts]):
            raise ValueError(f"expected an object with a list of {parts}, each with a name")
        if parts == "shards" and not (isinstance(manifest.get("stats"), dict)
                                      and all(isinstance(e.get("segments"), list) for e in manifest["shards"])):
            raise ValueError("a sharded manifest needs 'stats' and each shard's 'segments'")
        for key in ("generation", "max_seq"):
            if isinstance(manifest.get(key), bool) or not isinstance(manifest.get(key), int):
                raise ValueError(f"'{key}' must be an integer")
        if not isinstance(manifest.get("analyzer"), dict):
            raise ValueError("'analyzer' must be an object")
    except (OSError, ValueError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        if damaged_ok:
            return None
        raise FunnelError(f"{path}: damaged index manifest ({exc}): {RECOVER}") from None
    if manifest.get("format_version") != FORMAT_VERSION:
        raise FunnelError(f"{path}: index format {manifest.get('format_version')}, this Funnel reads "
                          f"{FORMAT_VERSION}: rebuild with `funnel index --rebuild`")
    return manifest


class IndexWriter:
    """The single writer of an index folder: adds segments, merges them, publishes manifests."""

    def __init__(self, index_dir: str | Path, analyzer: Analyzer):
        self.dir = Path(index_dir)
        self.analyzer = analyzer
        self.dir.mkdir(parents=True, exist_ok=True)

    @contextmanager
    def _locked(self, replacing: bool = False, clean_first: bool = True):
        with open(self.dir / "write.lock", "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise FunnelError(f"index {self.dir} is being written by another process") from None
            if clean_first:
                self._clean_orphans(replacing)
            yield

    def _clean_orphans(self, replacing: bool = False) -> None:
        """Remove leftovers of crashed builds: temp folders and segments no manifest names (all of them
        when a rebuild replaces a damaged manifest)."""
        manifest = read_manifest(self.dir, damaged_ok=replacing)
        live = set()
        if manifest and manifest.get("kind") == "sharded":
            live = {s["name"] for s in manifest["shards"]} | {manifest["stats"]["dir"]}
        elif manifest:
            live = {s["name"] for s in manifest["segments"]}
        for p in self.dir.iterdir():
            if p.is_dir() and (p.name.startswith(".tmp-") or (p.name.startswith(("seg-", "shard-", "stats-"))
                                                               and p.name not in live)):
                remove_tree(p)

    def clean(self) -> None:
        """Remove what no manifest names (a sharded build's previous segments, once it is published)."""
        with self._locked():
            pass

    def _manifest(self) -> dict:
        manifest = read_manifest(self.dir)
        if manifest is None:
            return {"format_version": FORMAT_VERSION, "generation": 0, "analyzer": self.analyzer.describe(),
                    "max_seq": 0, "segments": []}
        if manifest.get("kind") == "sharded":
            raise FunnelError(f"index {self.dir} is sharded (built by `funnel pipeline index --shards N`): rebuild "
                              "it that way, or replace it with one index by `funnel index --rebuild`")
        check_compatible(manifest["analyzer"], self.analyzer, f"index {self.dir}")
        return manifest

    def _write_new_segment(self, seg: SegmentData, generation: int) -> str:
        name = f"seg-{generation:06d}"
        tmp = self.dir / f".tmp-{uuid.uuid4().hex}"
        write_segment(tmp, seg)
        os.rename(tmp, self.dir / name)
        return name

    def _publish(self, manifest: dict) -> None:
        tmp = self.dir / f".manifest-{uuid.uuid4().hex}.json"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.dir / MANIFEST)
        _fsync_dir(self.dir)

    def rebuild(self, seg: SegmentData, max_seq: int, *, clean: bool = True) -> dict:
        """Publish `seg` as the whole index, replacing every segment (the replaced ones are removed now,
        or by a later `clean` with clean=False: a sharded build's top-level manifest still names them)."""
        with self._locked(replacing=True):
            old = read_manifest(self.dir, damaged_ok=True)
            gen = (old["generation"] if old else 0) + 1
            name = self._write_new_segment(seg, gen)
            manifest = {"format_version": FORMAT_VERSION, "generation": gen, "analyzer": self.analyzer.describe(),
                        "max_seq": max_seq, "segments": [{"name": name, "deletes": None}]}
            self._publish(manifest)
            if clean:
                self._clean_orphans(replacing=True)
            return manifest

    def add(self, seg: SegmentData, max_seq: int) -> dict:
        """Publish `seg` as a new segment; older copies of its documents are marked deleted."""
        with self._locked():
            manifest = self._manifest()
            gen = manifest["generation"] + 1
            new_ids = set(seg.doc_ids)
            entries = []
            for entry in manifest["segments"]:
                old = read_segment(self.dir / entry["name"])
                dels = self._deletes(entry)
                replaced = [i for i, d in enumerate(old.doc_ids) if d in new_ids]
                if replaced:
                    merged = np.union1d(dels if dels is not None else np.zeros(0, np.int32),
                                        np.asarray(replaced, np.int32)).astype(np.int32)
                    fname = f"deletes-{gen:06d}.npy"
                    save_npy(self.dir / entry["name"] / fname, merged)
                    entry = {"name": entry["name"], "deletes": fname}
                entries.append(entry)
            entries.append({"name": self._write_new_segment(seg, gen), "deletes": None})
            manifest = {**manifest, "generation": gen, "max_seq": max(manifest["max_seq"], max_seq),
                        "segments": entries}
            self._publish(manifest)
            return manifest

    def _deletes(self, entry: dict) -> np.ndarray | None:
        return np.load(self.dir / entry["name"] / entry["deletes"]) if entry.get("deletes") else None

    def merge(self) -> dict:
        """Compact every segment (dropping deleted documents) into one."""
        with self._locked():
            manifest = self._manifest()
            if len(manifest["segments"]) <= 1 and not any(e["deletes"] for e in manifest["segments"]):
                return manifest
            segs = [read_segment(self.dir / e["name"]) for e in manifest["segments"]]
            dels = [self._deletes(e) for e in manifest["segments"]]
            meta = {"analyzer": self.analyzer.describe(), "min_seq": min(s.meta.get("min_seq", 0) for s in segs),
                    "max_seq": max(s.meta.get("max_seq", 0) for s in segs)}
            merged = merge_segments(segs, dels, meta)
            gen = manifest["generation"] + 1
            name = self._write_new_segment(merged, gen)
            manifest = {**manifest, "generation": gen, "segments": [{"name": name, "deletes": None}]}
            self._publish(manifest)
            self._clean_orphans()
            return manifest


def build_index(store, index_dir: str | Path, analyzer: Analyzer, *, incremental: bool = True,
                merge_max_segments: int = 8, progress: bool = True) -> dict:
    """Index the store: new documents become a new segment (or everything one, with incremental=False).

    Returns the published manifest.
    """
    writer = IndexWriter(index_dir, analyzer)
    manifest = read_manifest(Path(index_dir)) if incremental else None
    if manifest is not None and manifest.get("kind") == "sharded":
        raise FunnelError(f"index {index_dir} is sharded (built by `funnel pipeline index --shards N`): rebuild "
                          "it that way, or replace it with one index by `funnel index --rebuild`")
    if manifest is not None:
        check_compatible(manifest["analyzer"], analyzer, f"index {index_dir}")
    upto = store.max_seq()
    after = manifest["max_seq"] if manifest else 0
    if manifest is not None and after >= upto:
        return manifest  # nothing new
    total = store.count() if after == 0 else None
    seg = build_segment(store.iter_docs(after_seq=after, upto_seq=upto), analyzer, total=total, progress=progress)
    if seg.n_docs == 0 and manifest is None:
        raise FunnelError(f"the document store {store.path} is empty: nothing to index")
    if manifest is None:
        return writer.rebuild(seg, upto)
    manifest = writer.add(seg, upto)
    if len(manifest["segments"]) > merge_max_segments:
        manifest = writer.merge()
    return manifest

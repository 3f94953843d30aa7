"""On-disk inverted index segments: immutable, memory-mapped numpy arrays. Written by the builders
(local `funnel.index.builder`, Spark `funnel.pipelines.index_job`), read by `funnel.index.searcher`.

Files of one segment folder (format version 1)
----------------------------------------------
- ``segment.json``: ``format_version``, ``n_docs``, ``n_terms``, ``n_postings``,
  ``sum_doc_len`` (total tokens), ``min_seq``/``max_seq`` (store ``seq`` range it covers),
  ``analyzer`` (the analyzer's name and settings).
- ``terms.json``: the term dictionary, a JSON list of strings in code-point order;
  term id = position.
- ``offsets.npy``: int64, (n_terms + 1,). Postings of term t are ``[offsets[t], offsets[t+1])``.
- ``doc_ords.npy``: int32, (n_postings,). Segment-local doc ordinal, ascending within a term.
- ``tfs.npy``: int32, (n_postings,). Term frequency of the term in that document.
- ``doc_lens.npy``: int32, (n_docs,). Document length in analysed tokens.
- ``doc_ids.json``: JSON list of n_docs external doc ids, by ordinal.

Deleted documents are not in the segment: the index manifest names a ``deletes-GEN.npy``
(int32 sorted doc ordinals) per segment when a later segment replaced some of its documents.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from funnel.core.errors import FunnelError

FORMAT_VERSION = 1


@dataclass
class SegmentData:
    """A segment's arrays, in memory or memory-mapped."""
    terms: list[str]
    offsets: np.ndarray  # int64 (n_terms + 1,)
    doc_ords: np.ndarray  # int32 (n_postings,)
    tfs: np.ndarray  # int32 (n_postings,)
    doc_lens: np.ndarray  # int32 (n_docs,)
    doc_ids: list[str]
    meta: dict

    @property
    def n_docs(self) -> int:
        return len(self.doc_ids)


def postings_from_pairs(term_ids: np.ndarray, doc_ords: np.ndarray, n_terms: int):
    """(term id, doc ordinal) per token -> CSR postings: offsets, doc_ords, tfs.

    Tokens may arrive in any order; duplicates of a (term, doc) pair become its tf.
    """
    # (n_tokens,) int64 keys that sort by term, then by doc
    n_docs = int(doc_ords.max()) + 1 if len(doc_ords) else 0
    keys = term_ids.astype(np.int64) * max(n_docs, 1) + doc_ords
    uniq, tfs = np.unique(keys, return_counts=True)
    p_terms = uniq // max(n_docs, 1)
    p_docs = (uniq % max(n_docs, 1)).astype(np.int32)
    offsets = np.zeros(n_terms + 1, dtype=np.int64)
    np.cumsum(np.bincount(p_terms, minlength=n_terms), out=offsets[1:])
    return offsets, p_docs, tfs.astype(np.int32)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _PythonWrites:
    """A file as numpy sees a non-file: `np.lib.format.write_array` then writes through Python's `write`."""

    def __init__(self, f):
        self.write = f.write


def save_npy(path: Path, arr: np.ndarray) -> None:
    """Write `arr` as a ``.npy`` file at `path`, fsynced; a write the disk refuses raises OSError with its
    errno (ENOSPC, EFBIG, EROFS). `np.save` on a real file writes through C stdio: an array smaller than
    the stdio buffer whose flush fails leaves a truncated file and no error at all, a larger one raises
    OSError without errno ("N requested and M written")."""
    with open(path, "wb") as f:
        np.lib.format.write_array(_PythonWrites(f), np.ascontiguousarray(arr), allow_pickle=False)
        f.flush()
        os.fsync(f.fileno())


def write_segment(out_dir: Path, seg: SegmentData) -> Path:
    """Write a segment into a fresh folder `out_dir` (which must not exist yet), fsynced."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True)
    meta = dict(seg.meta)
    meta.update(format_version=FORMAT_VERSION, n_docs=seg.n_docs, n_terms=len(seg.terms),
                n_postings=int(len(seg.doc_ords)), sum_doc_len=int(np.asarray(seg.doc_lens, np.int64).sum()))
    arrays = {"offsets": (seg.offsets, np.int64), "doc_ords": (seg.doc_ords, np.int32),
              "tfs": (seg.tfs, np.int32), "doc_lens": (seg.doc_lens, np.int32)}
    for name, (arr, dtype) in arrays.items():
        save_npy(out_dir / f"{name}.npy", np.ascontiguousarray(arr, dtype=dtype))
    for name, obj in (("terms", seg.terms), ("doc_ids", seg.doc_ids), ("segment", meta)):
        with open(out_dir / f"{name}.json", "w", encoding="utf-8") as f:
            json.dump(obj, f, ensure_ascii=False)
            f.flush()
            os.fsync(f.fileno())
    _fsync_dir(out_dir)
    return out_dir


RECOVER = "rebuild the index from the document store with `funnel index --rebuild`"


def read_segment(seg_dir: Path, mmap: bool = True) -> SegmentData:
    """Open a segment folder; a missing or damaged file is a FunnelError naming it and the way back."""
    seg_dir = Path(seg_dir)
    if not seg_dir.is_dir():
        raise FunnelError(f"{seg_dir}: segment folder missing (named by the index manifest): {RECOVER}")
    current = seg_dir / "segment.json"
    try:
        meta = json.loads(current.read_text("utf-8"))
        if meta.get("format_version") != FORMAT_VERSION:
            raise FunnelError(f"{seg_dir}: segment format {meta.get('format_version')}, expected {FORMAT_VERSION}: "
                              f"{RECOVER}")
        mode = "r" if mmap else None
        # np.asarray drops the np.memmap subclass (still backed by the mapping): its per-slice
        # overhead dominated query time when kept.
        arrays = {}
        for n in ("offsets", "doc_ords", "tfs", "doc_lens"):
            current = seg_dir / f"{n}.npy"
            arrays[n] = np.asarray(np.load(current, mmap_mode=mode))
        current = seg_dir / "terms.json"
        terms = json.loads(current.read_text("utf-8"))
        current = seg_dir / "doc_ids.json"
        doc_ids = json.loads(current.read_text("utf-8"))
    except (OSError, ValueError, AttributeError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise FunnelError(f"{current}: cannot be read ({type(exc).__name__}: {exc}): {RECOVER}") from None
    return SegmentData(terms=terms, doc_ids=doc_ids, meta=meta, **arrays)


def merge_segments(segs: list[SegmentData], deletes: list[np.ndarray | None], meta: dict) -> SegmentData:
    """Concatenate segments in order, dropping deleted docs; term dictionary is the sorted union."""
    terms = sorted(set().union(*(s.terms for s in segs))) if segs else []
    term_pos = {t: i for i, t in enumerate(terms)}
    all_terms, all_docs, all_tfs, lens, ids = [], [], [], [], []
    base = 0
    for seg, dels in zip(segs, deletes):
        keep = np.ones(seg.n_docs, dtype=bool)
        if dels is not None and len(dels):
            keep[dels] = False
        new_ord = np.cumsum(keep) - 1 + base  # (n_docs,) new ordinal of each kept doc
        remap = np.fromiter((term_pos[t] for t in seg.terms), dtype=np.int64, count=len(seg.terms))
        counts = np.diff(np.asarray(seg.offsets))
        p_terms = np.repeat(remap, counts)
        p_docs = np.asarray(seg.doc_ords)
        live = keep[p_docs]
        all_terms.append(p_terms[live])
        all_docs.append(new_ord[p_docs[live]])
        all_tfs.append(np.asarray(seg.tfs)[live])
        lens.append(np.asarray(seg.doc_lens)[keep])
        ids.extend(d for d, k in zip(seg.doc_ids, keep) if k)
        base += int(keep.sum())
    if not segs:
        return SegmentData([], np.zeros(1, np.int64), np.zeros(0, np.int32), np.zeros(0, np.int32),
                           np.zeros(0, np.int32), [], meta)
    p_terms = np.concatenate(all_terms)
    p_docs = np.concatenate(all_docs).astype(np.int32)
    p_tfs = np.concatenate(all_tfs)
    order = np.argsort(p_terms, kind="stable")  # docs already ascend within a term: segments come in order
    offsets = np.zeros(len(terms) + 1, dtype=np.int64)
    np.cumsum(np.bincount(p_terms, minlength=len(terms)), out=offsets[1:])
    return SegmentData(terms, offsets, p_docs[order], p_tfs[order], np.concatenate(lens), ids, meta)


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)

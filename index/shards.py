"""Document-partitioned sharded index: N ordinary Funnel indexes (shards) under one folder, plus a
top-level manifest naming them and the global collection statistics. Written by the Spark job
(`funnel.pipelines.index_job.run_sharded_index_job`: each executor writes its own shard), read by
`funnel.index.searcher` (one process scatters a query to every shard and gathers the top k).

A shard holds a contiguous range of store ``seq``s, shards in ``seq`` order, so concatenating the
shards' documents gives exactly the single index's doc ordinals; scored with the global N, average
length and document frequencies, every document gets the single index's BM25 score, bit for bit.

Files of a sharded index folder (``HOME/index/``), format version 1
-------------------------------------------------------------------
- ``manifest.json``: ``format_version``, ``kind`` = ``"sharded"``, ``generation``, ``analyzer``,
  ``max_seq``, ``shards``: list (in ``seq`` order) of ``{"name": "shard-003", "segments": [...],
  "n_docs", "sum_doc_len", "min_seq", "max_seq"}`` (the shard's segment entries, as in a single
  index's manifest, pinned at this generation), ``stats``: ``{"n_docs", "sum_doc_len", "avg_len",
  "n_terms", "dir": "stats-GGGGGG"}``.
- ``shard-NNN/``: a normal index folder (``manifest.json``, ``seg-*``), openable alone.
- ``stats-GGGGGG/terms.json``: the union term dictionary (JSON list, code-point order).
- ``stats-GGGGGG/df.npy``: int64, (n_terms,): documents containing each term, over all shards.

Publishing: executors write their shards (each through its own `IndexWriter`, the previous
segment kept), then the driver writes the statistics and ``os.replace``s the top-level manifest; only
then are the previous generation's segments, statistics and surplus shards removed. A reader
opens the segments the top-level manifest names, so it sees one generation whole.
"""
from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import numpy as np

from funnel.core.errors import FunnelError
from funnel.index.analyze import Analyzer
from funnel.index.builder import IndexWriter, read_manifest
from funnel.index.segments import FORMAT_VERSION, SegmentData, _fsync_dir, read_segment, save_npy

SHARDED = "sharded"


def is_sharded(manifest: dict | None) -> bool:
    return bool(manifest) and manifest.get("kind") == SHARDED


def shard_name(shard: int) -> str:
    return f"shard-{shard:03d}"


def write_shard(index_dir: str | Path, shard: int, seg: SegmentData, analyzer: Analyzer) -> dict:
    """Publish `seg` as shard `shard` of `index_dir` (runs on a Spark executor) and return its summary
    for the top-level manifest: name, segments, counts and seq range. The terms and their document
    frequencies stay in the shard's files (the driver reads them one shard at a time, `global_df`)."""
    name = shard_name(shard)
    max_seq = int(seg.meta.get("max_seq", 0))
    manifest = IndexWriter(Path(index_dir) / name, analyzer).rebuild(seg, max_seq, clean=False)
    return {"name": name, "segments": manifest["segments"], "n_docs": seg.n_docs,
            "sum_doc_len": int(np.asarray(seg.doc_lens, np.int64).sum()),
            "min_seq": int(seg.meta.get("min_seq", 0)), "max_seq": max_seq}


def global_df(index_dir: str | Path, summaries: list[dict]) -> tuple[list[str], np.ndarray]:
    """Union term dictionary (sorted) and summed document frequencies of the shards.

    Read from the shards' own segment files one shard at a time, so the driver holds one running
    term -> df table (the vocabulary), never the shards' dictionaries all at once nor any postings:
    its memory follows the vocabulary, not the number of documents or shards.
    """
    df_of: dict[str, int] = {}
    for s in summaries:
        for entry in s["segments"]:
            seg = read_segment(Path(index_dir) / s["name"] / entry["name"])  # postings mmap'd, never read
            df = np.diff(np.asarray(seg.offsets, np.int64)).tolist()  # no deletes in a fresh shard
            for term, n in zip(seg.terms, df):
                df_of[term] = df_of.get(term, 0) + n
            del seg
    terms = sorted(df_of)
    return terms, np.fromiter((df_of[t] for t in terms), dtype=np.int64, count=len(terms))


def publish_shards(index_dir: str | Path, analyzer: Analyzer, summaries: list[dict], max_seq: int) -> dict:
    """Write the global statistics and the top-level manifest of shards already written (driver side)."""
    index_dir = Path(index_dir)
    summaries = sorted(summaries, key=lambda s: s["name"])  # shard number = seq order
    writer = IndexWriter(index_dir, analyzer)
    with writer._locked(clean_first=False):  # the new shards are not named yet: cleaning now would remove them
        old = read_manifest(index_dir, damaged_ok=True)
        gen = (old["generation"] if old else 0) + 1
        terms, df = global_df(index_dir, summaries)
        stats_name = f"stats-{gen:06d}"
        tmp = index_dir / f".tmp-{uuid.uuid4().hex}"
        tmp.mkdir()
        save_npy(tmp / "df.npy", df)
        with open(tmp / "terms.json", "w", encoding="utf-8") as f:
            json.dump(terms, f, ensure_ascii=False)
            f.flush()
            os.fsync(f.fileno())
        _fsync_dir(tmp)
        os.rename(tmp, index_dir / stats_name)
        n_docs = sum(s["n_docs"] for s in summaries)
        sum_len = sum(s["sum_doc_len"] for s in summaries)
        manifest = {
            "format_version": FORMAT_VERSION, "kind": SHARDED, "generation": gen,
            "analyzer": analyzer.describe(), "max_seq": int(max_seq),
            "shards": [{k: s[k] for k in ("name", "segments", "n_docs", "sum_doc_len", "min_seq", "max_seq")}
                       for s in summaries],
            "stats": {"n_docs": n_docs, "sum_doc_len": sum_len, "avg_len": sum_len / max(n_docs, 1),
                      "n_terms": len(terms), "dir": stats_name},
        }
        writer._publish(manifest)
        writer._clean_orphans()  # the previous generation's segments, stats and surplus shards
        for s in summaries:
            IndexWriter(index_dir / s["name"], analyzer).clean()
    return manifest


def read_stats(index_dir: str | Path, manifest: dict) -> tuple[list[str], np.ndarray]:
    """The global term dictionary and df array a sharded manifest names."""
    path = Path(index_dir) / manifest["stats"]["dir"]
    try:
        terms = json.loads((path / "terms.json").read_text("utf-8"))
        df = np.load(path / "df.npy")
    except (OSError, ValueError) as exc:
        raise FunnelError(f"{path}: sharded index statistics cannot be read ({type(exc).__name__}: {exc}): "
                          "rebuild with `funnel pipeline index --shards N`") from None
    if len(terms) != len(df):
        raise FunnelError(f"{path}: {len(terms)} terms but {len(df)} document frequencies: "
                          "rebuild with `funnel pipeline index --shards N`")
    return terms, df


def shard_manifest(manifest: dict, entry: dict) -> dict:
    """A shard's own manifest as the top-level manifest pinned it (its segments at this generation)."""
    return {"format_version": manifest["format_version"], "generation": manifest["generation"],
            "analyzer": manifest["analyzer"], "max_seq": entry["max_seq"], "segments": entry["segments"]}


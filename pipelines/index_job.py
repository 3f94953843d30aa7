"""Spark index job: the store's Parquet export -> the same inverted index the local builder writes.

Documents are cut into shards of contiguous ``seq`` ranges (``repartitionByRange``, sorted within each
shard). Each Spark task analyses its shard with the very `funnel.index.analyze.Analyzer` the local builder
uses (built once per partition, so the stemmer and jieba load once per task) and inverts it into a
segment with the builder's pure `funnel.index.builder.segment_from_tokens`. The driver receives the shards in
``seq`` order, concatenates them with `funnel.index.segments.merge_segments` and publishes the result through
`funnel.index.builder.IndexWriter`: the same files, the same atomic manifest, the same doc ordinals (by
``seq``), postings and collection statistics as ``funnel index``, so `IndexReader`/`Bm25Retriever`
read it unchanged and score every query identically.

Incremental runs index only documents with ``seq`` above the manifest's ``max_seq`` as one new
segment, exactly as the local builder does.

`run_sharded_index_job` skips the driver entirely for postings: each task publishes its shard as a
normal index folder (``index_dir/shard-NNN/``) on the shared filesystem and returns only its counts
and term dictionary with document frequencies; the driver sums those into the global statistics and
publishes the top-level manifest (`funnel.index.shards`). It always indexes every document.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from funnel.core.config import AnalyzerConfig
from funnel.core.errors import FunnelError
from funnel.index.analyze import Analyzer, check_compatible
from funnel.index.builder import IndexWriter, doc_text, read_manifest, segment_from_tokens
from funnel.index.segments import SegmentData, merge_segments
from funnel.index.shards import is_sharded, publish_shards, write_shard


@dataclass
class IndexJobResult:
    manifest: dict
    n_docs: int
    n_shards: int
    seconds: float


def _analyze_shard(settings: dict):
    """mapPartitionsWithIndex function: one shard of seq-sorted rows -> one (shard index, SegmentData)."""

    def run(shard: int, rows):
        analyzer = Analyzer(AnalyzerConfig(**settings))  # once per partition
        vocab: dict[str, int] = {}
        token_ids, doc_lens, doc_ids, seqs = [], [], [], []
        for row in rows:
            ids = [vocab.setdefault(t, len(vocab)) for t in analyzer(doc_text(row))]
            token_ids.append(np.asarray(ids, dtype=np.int32))
            doc_lens.append(len(ids))
            doc_ids.append(row.doc_id)
            seqs.append(row.seq)
        if doc_ids:
            yield shard, segment_from_tokens(vocab, token_ids, doc_lens, doc_ids, analyzer,
                                             min_seq=min(seqs), max_seq=max(seqs))

    return run


def _write_shards(index_dir: str, settings: dict):
    """mapPartitionsWithIndex function: analyse a shard, write it under `index_dir`, yield its summary."""
    analyze = _analyze_shard(settings)

    def run(shard: int, rows):
        analyzer = Analyzer(AnalyzerConfig(**settings))
        for _, seg in analyze(shard, rows):
            yield write_shard(index_dir, shard, seg, analyzer)

    return run


def build_segment_spark(docs_df, analyzer: Analyzer, n_shards: int) -> SegmentData:
    """A DataFrame with columns seq, doc_id, title, text -> one segment in ``seq`` order."""
    settings = asdict(analyzer.config)
    shards = (docs_df.select("seq", "doc_id", "title", "text")
              .repartitionByRange(max(n_shards, 1), "seq")
              .sortWithinPartitions("seq")
              .rdd.mapPartitionsWithIndex(_analyze_shard(settings)))
    # Shards stream to the driver one at a time; range partitions are seq-ordered by partition index.
    parts = sorted(shards.toLocalIterator(prefetchPartitions=False), key=lambda kv: kv[0])
    segs = [seg for _, seg in parts]
    if not segs:
        return segment_from_tokens({}, [], [], [], analyzer)
    meta = {"analyzer": analyzer.describe(), "min_seq": min(s.meta["min_seq"] for s in segs),
            "max_seq": max(s.meta["max_seq"] for s in segs)}
    if len(segs) == 1:
        return SegmentData(**{**segs[0].__dict__, "meta": meta})
    # shard order = seq order and segments hold no deletes: the merge is a concatenation
    return merge_segments(segs, [None] * len(segs), meta)


def _read_docs(spark, parquet_dir: str | Path):
    docs_path = Path(parquet_dir) / "docs.parquet"
    if not str(parquet_dir).startswith(("hdfs:", "s3a:", "gs:", "abfs:")) and not docs_path.exists():
        raise FunnelError(f"{docs_path} not found: export the store first (`funnel pipeline` does it)")
    docs = spark.read.parquet(str(docs_path))
    missing = {"seq", "doc_id", "title", "text"} - set(docs.columns)
    if missing:
        raise FunnelError(f"{docs_path}: missing columns {sorted(missing)}")
    return docs


def run_index_job(spark, parquet_dir: str | Path, index_dir: str | Path, analyzer: Analyzer, *,
                  incremental: bool = True, n_shards: int = 8) -> IndexJobResult:
    """Index ``parquet_dir/docs.parquet`` into `index_dir` (new documents only, or all with incremental=False)."""
    from pyspark.sql import functions as F

    t0 = time.perf_counter()
    docs_path = Path(parquet_dir) / "docs.parquet"
    docs = _read_docs(spark, parquet_dir)
    manifest = read_manifest(Path(index_dir)) if incremental else None
    if is_sharded(manifest):
        raise FunnelError(f"index {index_dir} is sharded: add documents with `funnel pipeline index --shards N` "
                          "(rebuilds the shards), or replace it with one index (`--rebuild`)")
    if manifest is not None:
        check_compatible(manifest["analyzer"], analyzer, f"index {index_dir}")
    after = manifest["max_seq"] if manifest else 0
    upto = docs.agg(F.max("seq")).first()[0] or 0
    if manifest is not None and after >= upto:
        return IndexJobResult(manifest, 0, 0, time.perf_counter() - t0)
    seg = build_segment_spark(docs.where(F.col("seq") > after), analyzer, n_shards)
    if seg.n_docs == 0 and manifest is None:
        raise FunnelError(f"{docs_path} holds no documents: nothing to index")
    writer = IndexWriter(index_dir, analyzer)
    manifest = writer.rebuild(seg, upto) if manifest is None else writer.add(seg, upto)
    return IndexJobResult(manifest, seg.n_docs, n_shards, time.perf_counter() - t0)


def run_sharded_index_job(spark, parquet_dir: str | Path, index_dir: str | Path, analyzer: Analyzer, *,
                          n_shards: int = 8) -> IndexJobResult:
    """Index every document of ``parquet_dir/docs.parquet`` as `n_shards` shards written by the executors.

    `index_dir` must be a path every executor can write (local for ``local[*]``, a shared mount on a
    cluster); it is made absolute here, since executors run in their own working folders.
    """
    from pyspark.sql import functions as F

    t0 = time.perf_counter()
    index_dir = Path(index_dir).resolve()
    docs = _read_docs(spark, parquet_dir)
    upto = docs.agg(F.max("seq")).first()[0] or 0
    index_dir.mkdir(parents=True, exist_ok=True)
    summaries = (docs.select("seq", "doc_id", "title", "text")
                 .repartitionByRange(max(n_shards, 1), "seq")
                 .sortWithinPartitions("seq")
                 .rdd.mapPartitionsWithIndex(_write_shards(str(index_dir), asdict(analyzer.config)))
                 .collect())  # counts and term dictionaries only: the postings stay where the executors wrote them
    if not summaries:
        raise FunnelError(f"{Path(parquet_dir) / 'docs.parquet'} holds no documents: nothing to index")
    manifest = publish_shards(index_dir, analyzer, summaries, upto)
    return IndexJobResult(manifest, sum(s["n_docs"] for s in summaries), len(summaries),
                          time.perf_counter() - t0)

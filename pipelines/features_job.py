"""Spark features job: per-document features for the ranking funnel -> ``HOME/features/doc_features.parquet``.

Files
-----
``doc_features.parquet`` (a folder of Parquet part files), one row per document:
``doc_id`` (string), ``seq`` (long), ``n_tokens`` (int, analysed length of title + text, as indexed),
``n_unique_terms`` (int), ``title_tokens`` (int), ``n_outlinks`` (int, links recorded, any target),
``n_inlinks`` (int, distinct documents in the store linking here), ``pagerank`` (double; from the
PageRank output given, or computed here).
"""
from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

from funnel.core.config import AnalyzerConfig, PageRankConfig
from funnel.core.errors import FunnelError
from funnel.index.analyze import Analyzer
from funnel.index.builder import doc_text
from funnel.pipelines.pagerank_job import run_pagerank_job, write_parquet_atomic



def _lengths(settings: dict):
    def run(rows):
        analyzer = Analyzer(AnalyzerConfig(**settings))  # once per partition
        for row in rows:
            terms = analyzer(doc_text(row))
            yield row.doc_id, len(terms), len(set(terms)), len(analyzer(row.title or ""))

    return run


def run_features_job(spark, parquet_dir: str | Path, out_path: str | Path, analyzer: Analyzer, *,
                     pagerank_path: str | Path | None = None, pagerank: PageRankConfig | None = None) -> dict:
    """Compute the per-document features; reads PageRank from `pagerank_path` when it exists, else runs it."""
    from pyspark.sql import functions as F

    t0 = time.perf_counter()
    parquet_dir = Path(parquet_dir)
    for name in ("docs.parquet", "links.parquet"):
        if not (parquet_dir / name).exists():
            raise FunnelError(f"{parquet_dir / name} not found: export the store first (`funnel pipeline` does it)")
    docs = spark.read.parquet(str(parquet_dir / "docs.parquet"))
    links = spark.read.parquet(str(parquet_dir / "links.parquet"))
    settings = asdict(analyzer.config)
    lengths = docs.select("doc_id", "title", "text").rdd.mapPartitions(_lengths(settings)).toDF(
        "doc_id string, n_tokens int, n_unique_terms int, title_tokens int")
    ids = docs.select("doc_id")
    outdeg = links.groupBy(F.col("src").alias("doc_id")).agg(F.count(F.lit(1)).cast("int").alias("n_outlinks"))
    internal = links.join(ids.select(F.col("doc_id").alias("src")), "src").select("src", "dst").distinct()
    indeg = internal.groupBy(F.col("dst").alias("doc_id")).agg(F.count(F.lit(1)).cast("int").alias("n_inlinks"))
    if pagerank_path is None or not Path(pagerank_path).exists():
        pagerank_path = pagerank_path or Path(out_path).with_name("pagerank.parquet")
        c = pagerank or PageRankConfig()
        run_pagerank_job(spark, parquet_dir, pagerank_path, c.damping, c.tol, c.max_iter,
                         collapse_duplicates=c.collapse_duplicates)
    pr = spark.read.parquet(str(pagerank_path)).select("doc_id", "pagerank")
    out = (docs.select("doc_id", "seq").join(lengths, "doc_id", "left")
           .join(outdeg, "doc_id", "left").join(indeg, "doc_id", "left").join(pr, "doc_id", "left")
           .fillna(0, ["n_outlinks", "n_inlinks"]))
    write_parquet_atomic(out, out_path)
    return {"features": str(out_path), "pagerank": str(pagerank_path), "seconds": time.perf_counter() - t0}

"""Spark PageRank job: the store's link graph (``links.parquet``) -> ``HOME/features/pagerank.parquet``.

DataFrame iterations, so neither the edges nor the rank vector need to fit one machine. Same
semantics as `funnel.index.pagerank` (and ``networkx.pagerank`` on a DiGraph): duplicate links collapse,
self-loops count, links to pages outside the store are dropped, dangling mass goes to every node by
the dangling weights (default: the personalisation vector, default: uniform). One step:

    contrib[j] = sum over edges i -> j of rank[i] * w[i, j]           (join on src, group by dst)
    rank'[j]   = d * (contrib[j] + D * dangling_w[j]) + (1 - d) * p[j]

where D is the rank held by dangling nodes, computed with the L1 change in the one aggregation each
iteration needs. Each iteration's ranks are `localCheckpoint`ed, so the query plan stays short.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from funnel.core.errors import FunnelError, InputError
from funnel.index.pagerank import pagerank_edges, save_pagerank



# Up to this many links, `method="auto"` collects the edges and iterates on the driver (scipy): a graph
# this size fits one machine, where each DataFrame iteration would cost a Spark job (seconds).
DRIVER_MAX_EDGES = 20_000_000


@dataclass
class SparkPageRankResult:
    ranks: object  # DataFrame (node: long, rank: double); None when iterated on the driver
    iterations: int
    converged: bool
    seconds: float
    method: str = "dataframe"  # or "driver"


def weighted_edges(edges, collapse_duplicates: bool = True):
    """(src, dst) long DataFrame -> (src, dst, w) with w = share of src's out-weight."""
    from pyspark.sql import functions as F

    if collapse_duplicates:
        counted = edges.select("src", "dst").distinct().withColumn("cnt", F.lit(1.0))
    else:
        counted = edges.groupBy("src", "dst").agg(F.count(F.lit(1)).cast("double").alias("cnt"))
    out = counted.groupBy("src").agg(F.sum("cnt").alias("out"))
    return counted.join(out, "src").select("src", "dst", (F.col("cnt") / F.col("out")).alias("w"))


def pagerank_df(spark, edges, n_nodes: int, damping: float = 0.85, tol: float = 1e-10, max_iter: int = 200, *,
                personalization=None, dangling=None, collapse_duplicates: bool = True,
                partitions: int | None = None) -> SparkPageRankResult:
    """PageRank over nodes ``0 .. n_nodes-1`` and a DataFrame of edges (src, dst: long).

    `personalization` / `dangling`: optional DataFrames (node: long, weight: double), normalised here;
    nodes missing from them weigh 0.
    """
    from pyspark.sql import functions as F

    if not 0.0 <= damping < 1.0:
        raise InputError(f"pagerank: damping must lie in [0, 1), got {damping}")
    t0 = time.perf_counter()
    # Adaptive execution re-plans every small iteration: measurably slower here, so off for the loop.
    aqe = spark.conf.get("spark.sql.adaptive.enabled")
    spark.conf.set("spark.sql.adaptive.enabled", "false")
    try:
        return _iterate(spark, edges, n_nodes, damping, tol, max_iter, personalization, dangling,
                        collapse_duplicates, partitions, t0)
    finally:
        spark.conf.set("spark.sql.adaptive.enabled", aqe)


def _iterate(spark, edges, n_nodes, damping, tol, max_iter, personalization, dangling, collapse_duplicates,
             partitions, t0):
    from pyspark.sql import functions as F

    parts = partitions or int(spark.conf.get("spark.sql.shuffle.partitions"))
    w_edges = weighted_edges(edges, collapse_duplicates).repartition(parts, "src").cache()
    sources = w_edges.select(F.col("src").alias("node")).distinct().withColumn("has_out", F.lit(True))
    nodes = spark.range(n_nodes).withColumnRenamed("id", "node")

    def weights(df, name):
        if df is None:
            return None
        total = df.agg(F.sum("weight")).first()[0]
        if not total or total <= 0:
            raise InputError(f"pagerank: {name} weights must be non-negative and not all zero")
        return df.select("node", (F.col("weight") / F.lit(total)).alias(name))

    p = weights(personalization, "p")
    wd = weights(dangling, "wd")
    nodes = nodes.join(sources, "node", "left").select("node", F.col("has_out").isNull().alias("dangling"))
    nodes = (nodes.join(p, "node", "left").fillna(0.0, ["p"]) if p is not None
             else nodes.withColumn("p", F.lit(1.0 / n_nodes)))
    nodes = (nodes.join(wd, "node", "left").fillna(0.0, ["wd"]) if wd is not None
             else nodes.withColumn("wd", F.col("p")))
    ranks = nodes.withColumn("rank", F.lit(1.0 / n_nodes)).repartition(parts, "node").localCheckpoint(eager=True)
    dangling_mass = ranks.agg(F.sum(F.when(F.col("dangling"), F.col("rank")).otherwise(0.0))).first()[0] or 0.0
    converged, it = False, 0
    for it in range(1, max_iter + 1):
        contribs = (w_edges.join(ranks.select(F.col("node").alias("src"), "rank"), "src")
                    .groupBy("dst").agg(F.sum(F.col("w") * F.col("rank")).alias("c"))
                    .withColumnRenamed("dst", "node"))
        new = ranks.join(contribs, "node", "left").select(
            "node", "dangling", "p", "wd", F.col("rank").alias("old"),
            (F.lit(damping) * (F.coalesce(F.col("c"), F.lit(0.0)) + F.lit(dangling_mass) * F.col("wd"))
             + F.lit(1.0 - damping) * F.col("p")).alias("rank"))
        new = new.localCheckpoint(eager=True)  # computed once here; cuts the lineage
        err, dangling_mass = new.agg(F.sum(F.abs(F.col("rank") - F.col("old"))),
                                     F.sum(F.when(F.col("dangling"), F.col("rank")).otherwise(0.0))).first()
        dangling_mass = dangling_mass or 0.0
        ranks = new.drop("old")
        if err < tol:
            converged = True
            break
    w_edges.unpersist()
    return SparkPageRankResult(ranks.select("node", "rank"), it, converged, time.perf_counter() - t0)


def run_pagerank_job(spark, parquet_dir: str | Path, out_path: str | Path, damping: float = 0.85,
                     tol: float = 1e-10, max_iter: int = 200, *, collapse_duplicates: bool = True,
                     method: str = "auto", driver_max_edges: int = DRIVER_MAX_EDGES) -> SparkPageRankResult:
    """PageRank of the documents in ``docs.parquet`` over ``links.parquet``; writes (doc_id, pagerank) Parquet.

    Nodes are the store's documents; a link counts when its ``dst`` is a document id (the crawler
    stores canonical URLs as both). `method`: "dataframe" (Spark iterations, any size), "driver"
    (Spark joins the ids, the driver iterates with `funnel.index.pagerank`) or "auto" (driver up to
    `driver_max_edges` links). Both give the same ranks to rounding.
    """
    if method not in ("auto", "dataframe", "driver"):
        raise InputError(f"pagerank method must be auto, dataframe or driver, got {method!r}")
    from pyspark.sql import functions as F

    parquet_dir = Path(parquet_dir)
    for name in ("docs.parquet", "links.parquet"):
        if not (parquet_dir / name).exists():
            raise FunnelError(f"{parquet_dir / name} not found: export the store first (`funnel pipeline` does it)")
    docs = spark.read.parquet(str(parquet_dir / "docs.parquet")).select("doc_id")
    ids = docs.rdd.map(lambda r: r.doc_id).zipWithIndex().toDF(["doc_id", "node"]).cache()
    n = ids.count()
    if n == 0:
        raise FunnelError(f"{parquet_dir / 'docs.parquet'} holds no documents")
    links = spark.read.parquet(str(parquet_dir / "links.parquet")).select("src", "dst")
    edges = (links.join(ids.select(F.col("doc_id").alias("src"), F.col("node").alias("s")), "src")
             .join(ids.select(F.col("doc_id").alias("dst"), F.col("node").alias("d")), "dst")
             .select(F.col("s").alias("src"), F.col("d").alias("dst")))
    if method == "auto":
        edges = edges.cache()
        method = "driver" if edges.count() <= driver_max_edges else "dataframe"
    if method == "driver":
        res = _pagerank_on_driver(ids, edges, n, damping, tol, max_iter, collapse_duplicates, out_path)
    else:
        res = pagerank_df(spark, edges, n, damping, tol, max_iter, collapse_duplicates=collapse_duplicates)
        out = ids.join(res.ranks, "node").select("doc_id", F.col("rank").alias("pagerank"))
        write_parquet_atomic(out, out_path)
    edges.unpersist()
    ids.unpersist()
    return res


def _pagerank_on_driver(ids, edges, n, damping, tol, max_iter, collapse_duplicates, out_path):
    import numpy as np

    t0 = time.perf_counter()
    e = edges.toArrow()
    node_ids = ids.toArrow()
    res = pagerank_edges(e.column("src").to_numpy(), e.column("dst").to_numpy(), n, damping, tol, max_iter,
                         collapse_duplicates=collapse_duplicates)
    doc_ids = np.empty(n, dtype=object)  # (n,) doc id of each node
    doc_ids[node_ids.column("node").to_numpy()] = node_ids.column("doc_id").to_pylist()
    save_pagerank(out_path, doc_ids.tolist(), res.scores)  # replaces an earlier run's file or folder
    return SparkPageRankResult(None, res.iterations, res.converged, time.perf_counter() - t0, "driver")


def write_parquet_atomic(df, out_path: str | Path) -> Path:
    """Write a DataFrame as a Parquet folder beside `out_path`, then swap it in (old copy removed)."""
    import shutil
    import uuid

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.{uuid.uuid4().hex}")
    df.write.parquet(str(tmp))
    if out_path.is_dir():
        old = out_path.with_name(f".{out_path.name}.old-{uuid.uuid4().hex}")
        out_path.rename(old)
        tmp.rename(out_path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        if out_path.exists():
            out_path.unlink()
        tmp.rename(out_path)
    return out_path

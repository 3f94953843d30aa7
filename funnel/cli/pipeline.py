"""Subcommands of the Spark pipelines: `funnel pipeline index|pagerank|features|cooccurrence [--master URL]`.

Each one exports the document store to ``HOME/parquet/`` (docs.parquet, links.parquet, and
interactions.parquet when the store holds interactions) unless ``--input DIR`` names an export already
made (for instance on a cluster filesystem; for `cooccurrence`, ``--interactions PATH`` names the
log), starts a SparkSession (``spark.master`` in the config, ``--master`` or spark-submit's own) and
runs one job.
"""
from __future__ import annotations

from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("pipeline", help="Spark batch jobs over the store's Parquet export")
    jobs = p.add_subparsers(dest="job", metavar="JOB", required=True)
    for name, help_text in (("index", "build the inverted index with Spark (same format as `funnel index`)"),
                            ("pagerank", "PageRank of the link graph -> HOME/features/pagerank.parquet"),
                            ("features", "per-document features -> HOME/features/doc_features.parquet")):
        j = jobs.add_parser(name, help=help_text)
        j.add_argument("--master", help="Spark master URL (default: config spark.master, e.g. local[*])")
        j.add_argument("--input", metavar="DIR", help="an existing Parquet export to read instead of exporting")
        if name == "pagerank":
            j.add_argument("--method", choices=["auto", "dataframe", "driver"], default="auto",
                           help="Spark DataFrame iterations, or collect the edges and iterate on the driver; "
                                "auto: driver up to 20M links (default)")
        if name == "index":
            j.add_argument("--rebuild", action="store_true", help="index every document as one new index")
            j.add_argument("--shards", type=int, default=0,
                           help="write a sharded index of N shards, each written by the executor that built it "
                                "(HOME/index/shard-NNN/; default: spark.index_layout, one merged index)")
        j.set_defaults(handler=_run)
    j = jobs.add_parser("cooccurrence", help="item-item co-occurrence counts of the interaction log (ItemKNN's input) "
                                             "-> HOME/features/cooccurrence/")
    j.add_argument("--master", help="Spark master URL (default: config spark.master, e.g. local[*])")
    j.add_argument("--interactions", metavar="PATH",
                   help="a Parquet log (user_id, item_id, ts) to read (default: export the store and read "
                        "HOME/parquet/interactions.parquet)")
    j.add_argument("--out", metavar="DIR", help="output folder (default: HOME/features/cooccurrence)")
    j.add_argument("--holdout-last", type=int, default=0, metavar="N",
                   help="drop each user's last N interactions first, in the split's order (2: the train part of "
                        "the leave-last-out split; default 0: count everything)")
    j.add_argument("--min-count", type=int, default=1, metavar="N", help="keep pairs of at least N users (default 1)")
    j.add_argument("--dataset", help="count this dataset of the log (needed when it holds several)")
    j.set_defaults(handler=_run_cooccurrence)


def _export(args, config) -> Path:
    from funnel.core.errors import FunnelError
    from funnel.core.store import DocumentStore

    if args.input:
        return Path(args.input)
    out = config.paths.parquet
    with DocumentStore(config.paths.store, readonly=True) as store:
        if store.count() == 0:  # before Spark starts: its jobs fail on an empty export with a JVM traceback
            raise FunnelError(f"document store {config.paths.store} holds no documents: ingest or crawl something "
                              "first (`funnel ingest beir DIR` or `funnel crawl URL`)")
        store.export_parquet(out)
    return out


def _run(args, config) -> int:
    import time

    from funnel.index.analyze import Analyzer
    from funnel.pipelines.session import spark_session

    from pyspark.sql import SparkSession

    t0 = time.perf_counter()
    parquet = _export(args, config)
    owned = SparkSession.getActiveSession() is None  # a caller's session (tests, notebooks) is left running
    spark = spark_session(config.spark, args.master, app_name=f"funnel-{args.job}")
    master = spark.sparkContext.master
    try:
        if args.job == "index":
            from funnel.pipelines.index_job import run_index_job, run_sharded_index_job

            shards = args.shards or config.spark.index_shards or config.spark.shuffle_partitions
            if args.shards or config.spark.index_layout == "sharded":
                res = run_sharded_index_job(spark, parquet, config.paths.index, Analyzer(config.analyzer),
                                            n_shards=shards)
                m = res.manifest
                print(f"index {config.paths.index}: {res.n_docs} documents in {res.n_shards} shards written by "
                      f"the executors, generation {m['generation']} [{master}]")
            else:
                res = run_index_job(spark, parquet, config.paths.index, Analyzer(config.analyzer),
                                    incremental=not args.rebuild, n_shards=shards)
                m = res.manifest
                print(f"index {config.paths.index}: {res.n_docs} new documents in {shards} shards, generation "
                      f"{m['generation']}, {len(m['segments'])} segment(s) [{master}]")
        elif args.job == "pagerank":
            from funnel.pipelines.pagerank_job import run_pagerank_job

            c = config.pagerank
            res = run_pagerank_job(spark, parquet, config.paths.pagerank, c.damping, c.tol, c.max_iter,
                                   collapse_duplicates=c.collapse_duplicates, method=args.method)
            state = "converged" if res.converged else "NOT converged (raise pagerank.max_iter)"
            print(f"pagerank {config.paths.pagerank}: {res.iterations} iterations ({res.method}), "
                  f"{state} [{master}]")
        else:
            from funnel.pipelines.features_job import run_features_job

            pr = config.paths.pagerank
            run_features_job(spark, parquet, config.paths.doc_features, Analyzer(config.analyzer),
                             pagerank_path=pr, pagerank=config.pagerank)
            print(f"features {config.paths.doc_features} (pagerank {pr}) [{master}]")
    finally:
        if owned:
            spark.stop()
    print(f"{time.perf_counter() - t0:.1f}s")
    return 0


def _run_cooccurrence(args, config) -> int:
    import time

    from funnel.core.store import DocumentStore
    from funnel.pipelines.cooccurrence_job import require_input, run_cooccurrence_job
    from funnel.pipelines.session import spark_session

    from pyspark.sql import SparkSession

    t0 = time.perf_counter()
    path = args.interactions
    if path is None:
        path = config.paths.interactions_parquet
        if config.paths.store.exists():
            with DocumentStore(config.paths.store, readonly=True) as store:
                store.export_parquet(config.paths.parquet)
    require_input(path)  # before Spark starts (seconds)
    out = Path(args.out) if args.out else config.paths.cooccurrence
    owned = SparkSession.getActiveSession() is None  # a caller's session (tests, notebooks) is left running
    spark = spark_session(config.spark, args.master, app_name="funnel-cooccurrence")
    try:
        res = run_cooccurrence_job(spark, path, out, holdout_last=args.holdout_last, min_count=args.min_count,
                                   dataset=args.dataset)
        print(f"cooccurrence {res.out}: {res.n_pairs} pairs of {res.n_items} items over {res.n_users} users "
              f"(holdout_last {args.holdout_last}) [{spark.sparkContext.master}]")
    finally:
        if owned:
            spark.stop()
    print(f"{time.perf_counter() - t0:.1f}s")
    return 0

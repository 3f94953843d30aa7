"""The SparkSession every pipeline job runs in: local by default, any cluster through `master`.

Under ``spark-submit`` the master (and everything else) comes from spark-submit's own settings, so
nothing here overrides it unless `master` is passed explicitly.
"""
from __future__ import annotations

import os
import sys

from funnel.core.config import SparkConfig
from funnel.core.errors import FunnelError, MissingDependencyError


def spark_session(config: SparkConfig | None = None, master: str | None = None, app_name: str = "funnel"):
    """Get or create the SparkSession: `master` (or, outside spark-submit, ``config.master``)."""
    config = config or SparkConfig()
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # the hostname may not resolve to a usable address
    # Python workers must run this interpreter (its venv has the analyzer's stemmer and jieba), not `python3`.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    try:
        from pyspark import SparkConf
        from pyspark.sql import SparkSession
    except ImportError:
        raise MissingDependencyError("pyspark", "'pyspark[sql]'", "the Spark pipelines") from None
    builder = SparkSession.builder.appName(app_name)
    # spark-submit starts the JVM first and passes its port; its settings then live in the JVM's conf
    submitted = "PYSPARK_GATEWAY_PORT" in os.environ
    if submitted:
        from pyspark import SparkContext

        SparkContext._ensure_initialized()
    conf = SparkConf()
    submitted = submitted and conf.contains("spark.master")
    if master or not submitted:
        builder = builder.master(master or config.master)
    settings = {
        "spark.driver.memory": config.driver_memory,
        "spark.sql.shuffle.partitions": str(config.shuffle_partitions),
        "spark.default.parallelism": str(config.shuffle_partitions),
        "spark.ui.enabled": "true" if config.ui else "false",
        "spark.sql.adaptive.enabled": "true",
        "spark.driver.maxResultSize": config.max_result_size,
        "spark.python.worker.reuse": "true",
        "spark.ui.showConsoleProgress": "false",
    }
    for key, value in settings.items():
        if not (submitted and conf.contains(key)):
            builder = builder.config(key, value)
    try:
        spark = builder.getOrCreate()
    except Exception as exc:  # py4j/Java start-up failures: no Java, bad master URL
        raise FunnelError(f"could not start Spark (master {master or config.master!r}): {exc}. "
                          "Spark needs Java 17+ on PATH or JAVA_HOME") from None
    spark.sparkContext.setLogLevel(config.log_level)
    return spark

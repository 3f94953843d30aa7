"""Spark batch jobs over the document store's Parquet export: indexing, PageRank, per-document features,
item co-occurrence counts of the interaction log.

pyspark is imported inside the jobs, so importing this package stays cheap.
"""
from funnel.pipelines.cooccurrence_job import run_cooccurrence_job
from funnel.pipelines.features_job import run_features_job
from funnel.pipelines.index_job import run_index_job
from funnel.pipelines.pagerank_job import pagerank_df, run_pagerank_job
from funnel.pipelines.session import spark_session

__all__ = ["run_index_job", "run_pagerank_job", "run_features_job", "pagerank_df", "spark_session",
           "run_cooccurrence_job"]

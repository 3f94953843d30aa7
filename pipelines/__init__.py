"""Spark batch jobs over the document store's Parquet export: indexing, PageRank, per-document features."""

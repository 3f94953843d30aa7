"""The Spark index job builds the local builder's index: same files, postings, statistics and scores."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from funnel.core.store import DocumentStore
from funnel.index.analyze import Analyzer
from funnel.index.searcher import Bm25Retriever, IndexReader
from funnel.index.segments import read_segment

pytestmark = pytest.mark.spark


def assert_same_index(a_dir, b_dir, queries):
    ra, rb = IndexReader(a_dir), IndexReader(b_dir)
    assert ra.manifest["analyzer"] == rb.manifest["analyzer"]
    assert ra.manifest["max_seq"] == rb.manifest["max_seq"]
    assert ra.doc_ids == rb.doc_ids and ra.n_docs == rb.n_docs and ra.sum_len == rb.sum_len
    sa = read_segment(a_dir / ra.manifest["segments"][0]["name"])
    sb = read_segment(b_dir / rb.manifest["segments"][0]["name"])
    assert sa.terms == sb.terms
    for name in ("offsets", "doc_ords", "tfs", "doc_lens"):
        np.testing.assert_array_equal(getattr(sa, name), getattr(sb, name), err_msg=name)
    assert {k: v for k, v in sa.meta.items()} == {k: v for k, v in sb.meta.items()}
    ba, bb = Bm25Retriever(ra), Bm25Retriever(rb)
    for q in queries:
        np.testing.assert_array_equal(ba.score(q), bb.score(q))
        assert ba.search(q, 10).doc_ids == bb.search(q, 10).doc_ids


def test_spark_index_equals_local_index(spark, tiny_home, tmp_path):
    from funnel.pipelines.index_job import run_index_job

    with DocumentStore(tiny_home / "store.sqlite", readonly=True) as store:
        store.export_parquet(tmp_path / "parquet")
        queries = list(store.queries().values())
    assert len(queries) >= 10
    res = run_index_job(spark, tmp_path / "parquet", tmp_path / "index", Analyzer(), incremental=False, n_shards=3)
    assert res.n_docs == 50 and len(res.manifest["segments"]) == 1
    # the tiny corpus has Chinese documents: jieba ran inside the Spark tasks
    assert any("\u4e00" <= ch <= "\u9fff" for t in read_segment(tmp_path / "index" / "seg-000001").terms for ch in t)
    assert_same_index(tiny_home / "index", tmp_path / "index", queries)
    # nothing new in the export: an incremental run publishes nothing
    again = run_index_job(spark, tmp_path / "parquet", tmp_path / "index", Analyzer())
    assert again.n_docs == 0 and again.manifest["generation"] == res.manifest["generation"]


def test_spark_incremental_segment_scores_like_local(spark, tiny_home_copy, tmp_path):
    """New and replaced documents become a new segment, as `funnel index` does."""
    from funnel.core.store import Document
    from funnel.index.builder import build_index
    from funnel.pipelines.index_job import run_index_job

    home = tiny_home_copy
    spark_index = tmp_path / "spark_index"
    shutil.copytree(home / "index", spark_index)
    with DocumentStore(home / "store.sqlite") as store:
        first = next(store.iter_docs())
        store.put_docs([Document("new-1", title="Zinc fingers", text="zinc finger proteins bind DNA"),
                        Document(first.doc_id, title=first.title, text=first.text + " zinc")])
        store.export_parquet(tmp_path / "parquet")
        build_index(store, home / "index", Analyzer(), progress=False)
    res = run_index_job(spark, tmp_path / "parquet", spark_index, Analyzer(), n_shards=2)
    assert res.n_docs == 2 and len(res.manifest["segments"]) == 2
    local = Bm25Retriever(IndexReader(home / "index"))
    remote = Bm25Retriever(IndexReader(spark_index))
    for q in ("zinc finger", "protein", "cancer cells"):
        np.testing.assert_array_equal(local.score(q), remote.score(q))


def test_missing_export_is_a_clear_error(spark, tmp_path):
    from funnel.core.errors import FunnelError
    from funnel.pipelines.index_job import run_index_job

    with pytest.raises(FunnelError, match="docs.parquet not found"):
        run_index_job(spark, tmp_path / "nothing", tmp_path / "index", Analyzer())


def test_sharded_job_shards_score_like_the_local_index(spark, tiny_home, tmp_path):
    """Each task writes its shard; the driver only sums statistics: same ids and scores as one index."""
    from funnel.index.searcher import ShardedBm25Retriever
    from funnel.pipelines.index_job import run_sharded_index_job
    from tests.index.test_shards import assert_same_results

    with DocumentStore(tiny_home / "store.sqlite", readonly=True) as store:
        store.export_parquet(tmp_path / "parquet")
        queries = list(store.queries().values())
    res = run_sharded_index_job(spark, tmp_path / "parquet", tmp_path / "index", Analyzer(), n_shards=3)
    assert res.n_docs == 50 and res.n_shards == 3 and res.manifest["kind"] == "sharded"
    assert [s["name"] for s in res.manifest["shards"]] == ["shard-000", "shard-001", "shard-002"]
    _, sharded = assert_same_results(tiny_home / "index", tmp_path / "index", queries)
    assert isinstance(sharded, ShardedBm25Retriever) and len(sharded.shards) == 3
    # the single-index job refuses to add to shards rather than mixing layouts
    from funnel.core.errors import FunnelError
    from funnel.pipelines.index_job import run_index_job

    with pytest.raises(FunnelError, match="sharded"):
        run_index_job(spark, tmp_path / "parquet", tmp_path / "index", Analyzer())


@pytest.mark.slow
def test_sharded_scifact_equals_single_index_on_dev_queries(spark, scifact_dir, tmp_path):
    from funnel.crawler.beir import ingest_beir
    from funnel.index.builder import build_index
    from funnel.pipelines.index_job import run_sharded_index_job
    from tests.index.test_shards import assert_same_results

    with DocumentStore(tmp_path / "store.sqlite") as store:
        ingest_beir(scifact_dir, store, name="scifact")
        queries = store.queries("scifact")
        dev = [queries[q] for q in sorted(store.qrels("scifact", "dev"))]
        store.export_parquet(tmp_path / "parquet")
        build_index(store, tmp_path / "single", Analyzer(), progress=False)
    assert len(dev) >= 100
    run_sharded_index_job(spark, tmp_path / "parquet", tmp_path / "sharded", Analyzer(), n_shards=4)
    assert_same_results(tmp_path / "single", tmp_path / "sharded", dev, k=100)

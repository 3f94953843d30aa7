"""A sharded index (shards written apart, global statistics in the top-level manifest) answers every
query with the single index's ids and scores, through the same constructors."""
from __future__ import annotations

import numpy as np
import pytest

from funnel.core.errors import FunnelError
from funnel.core.store import DocumentStore
from funnel.index.analyze import Analyzer
from funnel.index.builder import build_index, build_segment, read_manifest
from funnel.index.searcher import Bm25Retriever, IndexReader, ShardedBm25Retriever, ShardedIndexReader
from funnel.index.shards import publish_shards, write_shard


def build_sharded(store_path, index_dir, n_shards: int) -> dict:
    """What the Spark job does, in one process: contiguous seq ranges, one shard each."""
    analyzer = Analyzer()
    with DocumentStore(store_path, readonly=True) as store:
        docs = list(store.iter_docs())
        upto = store.max_seq()
    cuts = np.array_split(np.arange(len(docs)), n_shards)
    summaries = [write_shard(index_dir, i, build_segment([docs[j] for j in idx], analyzer, progress=False), analyzer)
                 for i, idx in enumerate(cuts) if len(idx)]
    return publish_shards(index_dir, analyzer, summaries, upto)


def assert_same_results(single_dir, sharded_dir, queries, k=10):
    single, sharded = Bm25Retriever.open(single_dir), Bm25Retriever.open(sharded_dir)
    assert isinstance(sharded, ShardedBm25Retriever)
    assert sharded.reader.doc_ids == single.reader.doc_ids
    assert (sharded.reader.n_docs, sharded.reader.avg_len) == (single.reader.n_docs, single.reader.avg_len)
    for q in queries:
        a, b = single.search(q, k), sharded.search(q, k)
        assert a.doc_ids == b.doc_ids, q
        np.testing.assert_allclose(a.scores, b.scores, rtol=0, atol=1e-6)
        np.testing.assert_array_equal(a.scores, b.scores)  # in fact bit-identical
        np.testing.assert_array_equal(single.score(q), sharded.score(q))
        assert single.boolean_and(q).doc_ids == sharded.boolean_and(q).doc_ids
    return single, sharded


@pytest.mark.parametrize("n_shards", [1, 3, 4])
def test_sharded_index_scores_like_single_index(tiny_home, tmp_path, n_shards):
    manifest = build_sharded(tiny_home / "store.sqlite", tmp_path / "index", n_shards)
    assert manifest["kind"] == "sharded" and len(manifest["shards"]) == n_shards
    assert manifest["stats"]["n_docs"] == 50
    assert all((tmp_path / "index" / s["name"] / "manifest.json").exists() for s in manifest["shards"])
    with DocumentStore(tiny_home / "store.sqlite", readonly=True) as store:
        queries = list(store.queries().values())
    assert len(queries) >= 10
    single, sharded = assert_same_results(tiny_home / "index", tmp_path / "index", queries + ["zinc", "", "癌症"])
    # one constructor for every caller: IndexReader(path) opens the shards too
    reader = IndexReader(tmp_path / "index")
    assert isinstance(reader, ShardedIndexReader) and reader.doc_ids == single.reader.doc_ids
    for t in ("cell", "protein", "absent-term"):
        assert reader.df(t) == single.reader.df(t)
    d = single.reader.doc_ids[17]
    assert reader.ord_of(d) == 17 and reader.doc_lens[17] == single.reader.doc_lens[17]
    # a shard is a normal index of its own
    assert IndexReader(tmp_path / "index" / manifest["shards"][0]["name"]).n_docs == manifest["shards"][0]["n_docs"]


def test_rebuilt_shards_replace_the_old_generation(tiny_home, tmp_path):
    index = tmp_path / "index"
    build_sharded(tiny_home / "store.sqlite", index, 4)
    old_reader = Bm25Retriever.open(index)  # a reader holding generation 1 keeps answering
    m2 = build_sharded(tiny_home / "store.sqlite", index, 2)
    assert m2["generation"] == 2 and [s["name"] for s in m2["shards"]] == ["shard-000", "shard-001"]
    assert sorted(p.name for p in index.iterdir() if p.is_dir()) == ["shard-000", "shard-001", "stats-000002"]
    assert [len(list((index / s).glob("seg-*"))) for s in ("shard-000", "shard-001")] == [1, 1]
    assert old_reader.search("cell", 5).doc_ids == Bm25Retriever.open(index).search("cell", 5).doc_ids


def test_single_and_sharded_layouts_replace_each_other(tiny_home_copy, tmp_path):
    home = tiny_home_copy
    build_sharded(home / "store.sqlite", home / "index", 3)
    with DocumentStore(home / "store.sqlite", readonly=True) as store:
        with pytest.raises(FunnelError, match="sharded"):
            build_index(store, home / "index", Analyzer(), progress=False)  # incremental: not on shards
        build_index(store, home / "index", Analyzer(), incremental=False, progress=False)
    assert read_manifest(home / "index").get("kind") is None
    assert not any(p.name.startswith(("shard-", "stats-")) for p in (home / "index").iterdir())
    assert isinstance(Bm25Retriever.open(home / "index"), Bm25Retriever)
    build_sharded(home / "store.sqlite", home / "index", 2)
    assert not any(p.name.startswith("seg-") for p in (home / "index").iterdir())


def test_damaged_statistics_are_a_clear_error(tiny_home, tmp_path):
    m = build_sharded(tiny_home / "store.sqlite", tmp_path / "index", 2)
    (tmp_path / "index" / m["stats"]["dir"] / "df.npy").write_bytes(b"junk")
    with pytest.raises(FunnelError, match="statistics cannot be read"):
        Bm25Retriever.open(tmp_path / "index")


def test_served_sharded_index_answers_like_the_single_index(tiny_home_copy, tiny_home):
    """`funnel serve` (SearchService, BM25 only) serves a sharded home unchanged and picks up a new generation."""
    from funnel.api.service import SearchService
    from funnel.core.config import load_config

    home = tiny_home_copy
    gen = build_sharded(home / "store.sqlite", home / "index", 3)["generation"]
    sharded = SearchService.open(load_config(home=home), use_funnel=False, profiles=("cpu",))
    single = SearchService.open(load_config(home=tiny_home), use_funnel=False, profiles=("cpu",))
    try:
        for q in ("cell protein", "DNA repair", "zinc"):
            a, b = single.rank(q, 10), sharded.rank(q, 10)
            assert a.doc_ids == b.doc_ids and np.array_equal(a.scores, b.scores)
        assert sharded.n_docs == 50 and sharded.index_generation() == gen
        build_sharded(home / "store.sqlite", home / "index", 2)
        sharded.check_for_new_index(wait=True)
        assert sharded.index_generation() == gen + 1
        assert sharded.rank("cell protein", 10).doc_ids == single.rank("cell protein", 10).doc_ids
    finally:
        sharded.close()
        single.close()

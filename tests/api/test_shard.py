"""`funnel serve --shard I` processes and a front scattering to them (`funnel serve --shard-urls`): the
same ids and scores as the single index on every query (the tiny corpus's, and SciFact's dev queries
when SciFact is there), and a shard that is killed, hangs or is listed out of order is a 503 naming it."""
from __future__ import annotations

import contextlib
import re
import shutil
import socket
import time
from dataclasses import replace

import httpx
import numpy as np
import pytest

from funnel.core.config import load_config
from funnel.core.store import DocumentStore
from funnel.index.remote import RemoteShardedRetriever, ShardError
from funnel.index.searcher import Bm25Retriever
from tests.index.test_shards import build_sharded
from tests.servers import funnel_serve

N_SHARDS = 2
# BM25 recall alone: neither home has a dense index, nor trained models; the rerank stage (the same code
# either way) would take most of the test's time
BM25 = ['pipeline.recall="bm25"', 'pipeline.stages="recall"']


@contextlib.contextmanager
def shard_servers(home, n: int = N_SHARDS):
    """`funnel serve --shard I` for every shard of HOME's index -> their `Served`, in shard order."""
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(funnel_serve(home, ("--shard", str(i)))) for i in range(n)]


def sharded_copy(single_home, dst):
    """A home with `single_home`'s store and the same documents indexed as N_SHARDS shards."""
    dst.mkdir()
    shutil.copy(single_home / "store.sqlite", dst / "store.sqlite")
    build_sharded(dst / "store.sqlite", dst / "index", N_SHARDS)
    return dst


@pytest.fixture(scope="module", params=["tiny", "scifact-dev"])
def corpus(request, tiny_home, tmp_path_factory):
    """(single-index home, sharded home with its shard servers running, queries)."""
    if request.param == "tiny":
        single = tiny_home
        with DocumentStore(single / "store.sqlite", readonly=True) as store:
            queries = list(store.queries().values()) + ["zinc", "癌症", "the of and"]
    else:
        from funnel.crawler.beir import ingest_beir
        from funnel.index.analyze import Analyzer
        from funnel.index.builder import build_index

        single = tmp_path_factory.mktemp("scifact")
        with DocumentStore(single / "store.sqlite") as store:
            ingest_beir(request.getfixturevalue("scifact_dir"), store, name="scifact")
            queries = store.queries("scifact")
            queries = [queries[q] for q in sorted(store.qrels("scifact", "dev"))]
            build_index(store, single / "index", Analyzer(), progress=False)
        assert len(queries) >= 100
    sharded = sharded_copy(single, tmp_path_factory.mktemp(f"{request.param}-sharded") / "home")
    with shard_servers(sharded) as shards:
        yield single, sharded, shards, queries


def test_shard_servers_answer_like_the_single_index(corpus):
    """The front's retriever over two shard processes: ids and scores of the single index, every query."""
    single_home, sharded_home, shards, queries = corpus
    health = [httpx.get(f"{s.url}/health").json() for s in shards]
    assert [(h["shard"], h["n_shards"]) for h in health] == [(i, N_SHARDS) for i in range(N_SHARDS)]
    single = Bm25Retriever.open(single_home / "index")
    assert sum(h["docs"] for h in health) == health[0]["collection_docs"] == single.reader.n_docs
    remote = RemoteShardedRetriever.open(sharded_home / "index", ",".join(s.url for s in shards))
    try:
        for q in queries:
            a, b = single.search(q, 100), remote.search(q, 100)
            assert a.doc_ids == b.doc_ids, q
            np.testing.assert_allclose(a.scores, b.scores, rtol=0, atol=1e-6)
            np.testing.assert_array_equal(a.scores, b.scores)  # in fact bit-identical, as in one process
        for q in queries[:20]:
            np.testing.assert_array_equal(single.score(q), remote.score(q))  # the non-zero scores travel
            a, b = single.boolean_and(q), remote.boolean_and(q)
            assert a.doc_ids == b.doc_ids and np.array_equal(a.scores, b.scores)
        everything = remote.search(queries[0], single.reader.n_total)  # ties across shards: by global ordinal
        assert everything.doc_ids == single.search(queries[0], single.reader.n_total).doc_ids
    finally:
        remote.close()


def test_front_process_searches_like_the_single_index(corpus):
    """`funnel serve --shard-urls`'s /search against the same BM25 pipeline over the single index, every query."""
    from funnel.api.service import SearchService

    single_home, sharded_home, shards, queries = corpus
    service = SearchService.open(load_config(None, [f'paths.home="{single_home}"', *BM25]))
    try:
        with funnel_serve(sharded_home, ("--shard-urls", ",".join(s.url for s in shards)),
                          [a for b in BM25 for a in ("--set", b)]) as front, \
                httpx.Client(base_url=front.url) as http:
            for q in queries:
                got = http.post("/search", json={"q": q, "k": 100})
                assert got.status_code == 200, got.text
                hits = got.json()["hits"]
                want = service.search(q, 100).hits
                assert [h["doc_id"] for h in hits] == [h.doc_id for h in want], q
                np.testing.assert_allclose([h["score"] for h in hits], [h.score for h in want], rtol=0, atol=1e-6)
    finally:
        service.close()


@pytest.fixture(scope="module")
def tiny_sharded(tiny_home, tmp_path_factory):
    return sharded_copy(tiny_home, tmp_path_factory.mktemp("tiny-sharded") / "home")


def _front(home, urls: list[str], timeout_s: float = 5.0):
    """A front app in this process (the shard servers are real processes) -> (TestClient, service)."""
    from fastapi.testclient import TestClient

    from funnel.api.app import create_app
    from funnel.api.service import SearchService

    config = load_config(None, [f'paths.home="{home}"', 'pipeline.recall="bm25"'])
    config = replace(config, serve=replace(config.serve, shard_urls=",".join(urls), shard_timeout_s=timeout_s))
    service = SearchService.open(config)
    return TestClient(create_app(service)), service


def test_killed_or_hung_shard_is_a_503_naming_it(tiny_sharded):
    with shard_servers(tiny_sharded) as shards:
        client, service = _front(tiny_sharded, [s.url for s in shards])
        try:
            assert client.get("/search", params={"q": "cell protein"}).status_code == 200
            shards[1].proc.kill()
            shards[1].proc.wait()
            t0 = time.monotonic()
            r = client.get("/search", params={"q": "cell protein"})
            assert r.status_code == 503 and time.monotonic() - t0 < 5
            assert f"shard 1 at {shards[1].url} is not answering" in r.json()["error"]
            assert "funnel serve --shard 1" in r.json()["error"]
            assert client.get("/search", params={"q": "cell protein"}).status_code == 503  # no hang the next time
        finally:
            service.close()
        # a shard that takes the connection and never answers: a 503 once the timeout is spent
        with socket.socket() as hung:
            hung.bind(("127.0.0.1", 0))
            hung.listen(16)
            hung_url = "http://127.0.0.1:%d" % hung.getsockname()[1]
            remote = RemoteShardedRetriever.open(tiny_sharded / "index", f"{shards[0].url},{hung_url}", timeout_s=0.5)
            try:
                t0 = time.monotonic()
                with pytest.raises(ShardError, match=f"shard 1 at {hung_url} did not answer within 0.5 s"):
                    remote.search("cell protein", 10)
                assert time.monotonic() - t0 < 2
            finally:
                remote.close()


def test_front_refuses_shards_listed_out_of_order_or_miscounted(corpus):
    from funnel.core.errors import FunnelError

    _, sharded_home, shards, _ = corpus
    swapped = RemoteShardedRetriever.open(sharded_home / "index", f"{shards[1].url},{shards[0].url}")
    try:
        with pytest.raises(ShardError, match="serves shard ([01]) of index generation 1, the front expects shard "
                                             "(?!\\1)[01] of generation 1: list the URLs in shard order"):
            swapped.search("cell", 5)
    finally:
        swapped.close()
    with pytest.raises(FunnelError, match="names 1 shard server.* has 2 shards"):
        RemoteShardedRetriever.open(sharded_home / "index", "http://127.0.0.1:9")


def test_shard_command_errors_are_one_line(tiny_sharded, tiny_home, capsys):
    from funnel.cli.main import main

    for home, args, message in [
        (tiny_sharded, ["--shard", "2"], "error: shard 2 is out of range: .* has 2 shards \\(0 to 1\\)"),
        (tiny_home, ["--shard", "0"], "error: .* is a single index, not a sharded one"),
        (tiny_home, ["--shard-urls", "http://127.0.0.1:9"], "error: serve.shard_urls is set but .* is a single index"),
        (tiny_sharded, ["--shard-urls", "localhost:8101"], "serve.shard_urls = 'localhost:8101': expected"),
        (tiny_sharded, ["--shard", "0", "--workers", "2"], "error: --shard serves one shard to a front"),
    ]:
        assert main(["-q", "--home", str(home), "serve", *args]) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err
        assert re.search(message, err), err


def test_shard_api_validates_its_body(tiny_sharded):
    from fastapi.testclient import TestClient

    from funnel.api.shard import create_shard_app
    from funnel.index.builder import read_manifest
    from funnel.index.searcher import open_shard

    manifest = read_manifest(tiny_sharded / "index")
    client = TestClient(create_shard_app(open_shard(tiny_sharded / "index", 1, manifest=manifest), 1, manifest))
    ok = client.post("/shard/search", json={"query": "cell protein", "k": 3}).json()
    assert ok["shard"] == 1 and len(ok["ords"]) == len(ok["doc_ids"]) == len(ok["scores"]) == 3
    for body in ({"k": 3}, {"query": "x", "terms": ["x"]}, {"terms": ["x"], "mode": "and"}, {"query": "x", "k": 0},
                 {"query": "x", "limit": 3}):
        r = client.post("/shard/search", json=body)
        assert r.status_code == 422 and r.json()["error"], body
    assert client.get("/health").json()["docs"] == manifest["shards"][1]["n_docs"]

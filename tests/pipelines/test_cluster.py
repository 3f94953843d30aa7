"""A real Spark standalone cluster (a master and two 1-core workers on 127.0.0.1, from the pip pyspark):
`funnel pipeline index --shards 2` and `funnel pipeline pagerank` run on it through the CLI, in a separate
driver process, and give the local builder's index scores and the single-machine PageRank."""
from __future__ import annotations

import random
import subprocess
import sys

import pytest

from funnel.core.store import DocumentStore, Link
from funnel.index.analyze import Analyzer
from funnel.index.builder import build_index
from funnel.index.pagerank import graph_from_edges, load_pagerank, pagerank_graph
from tests.index.test_shards import assert_same_results

pytestmark = [pytest.mark.spark, pytest.mark.slow]  # ~1-3 min: three JVMs start


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from funnel.pipelines.standalone import start_cluster

    c = start_cluster(tmp_path_factory.mktemp("spark-cluster"), workers=2, cores=1, memory="1g")
    try:
        yield c
    finally:  # by PID, whatever happened
        c.stop()
    assert all(p.poll() is not None for p in c.procs)


def linked_home(tiny_dir, home):
    """The tiny corpus with a random link graph among its documents (and a few links leaving it)."""
    from funnel.crawler.beir import ingest_beir

    with DocumentStore(home / "store.sqlite") as store:
        ingest_beir(tiny_dir, store, name="tiny")
        docs = list(store.iter_docs())
        rng = random.Random(7)
        ids = [d.doc_id for d in docs]
        for d in docs[:30]:
            d.outlinks = [Link(u) for u in rng.sample(ids, 4)] + [Link("http://elsewhere.example/")]
        store.put_docs(docs[:30])
        build_index(store, home / "local-index", Analyzer(), progress=False)
        queries = list(store.queries().values())
        graph = graph_from_edges(store.iter_links(), [d.doc_id for d in store.iter_docs()])
    return queries, pagerank_graph(graph, tol=1e-12)


def test_index_and_pagerank_on_a_standalone_cluster(cluster, tiny_dir, tmp_path):
    from funnel.pipelines.standalone import cluster_env

    home = tmp_path / "home"  # absolute: the executors write the shards under it
    queries, expected_pr = linked_home(tiny_dir, home)
    funnel = [sys.executable, "-m", "funnel.cli.main", "--home", str(home), "-q", "--set", "pagerank.tol=1e-12"]
    for job in (["pipeline", "index", "--master", cluster.master_url, "--shards", "2"],
                ["pipeline", "pagerank", "--master", cluster.master_url]):
        run = subprocess.run(funnel + job, env=cluster_env(), capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, f"{run.stdout}\n{run.stderr[-3000:]}\n{cluster.log_tail()}"
        assert cluster.master_url in run.stdout
    # executors ran on both workers (each keeps a folder per application it ran)
    work = cluster.logs[0].parent
    assert all(list((work / f"work-{i}").glob("app-*")) for i in range(2))
    assert_same_results(home / "local-index", home / "index", queries)
    got = load_pagerank(home)
    assert got.keys() == expected_pr.keys()
    assert sum(abs(got[k] - expected_pr[k]) for k in got) < 1e-9

"""Spark DataFrame PageRank against networkx.pagerank (and the single-machine scipy version)."""
from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from funnel.index.pagerank import graph_from_edges, load_pagerank, pagerank_graph
from tests.index.test_pagerank import EDGES, NODES, random_graph

pytestmark = pytest.mark.spark


def _edges_df(spark, edges, nodes):
    index = {n: i for i, n in enumerate(nodes)}
    return spark.createDataFrame([(index[s], index[d]) for s, d in edges], "src long, dst long")


def _ranks(res, nodes):
    got = {r.node: r.rank for r in res.ranks.collect()}
    return {n: got[i] for i, n in enumerate(nodes)}


def _nx(edges, nodes, multi=False, **kw):
    g = nx.MultiDiGraph() if multi else nx.DiGraph()
    g.add_nodes_from(nodes)
    g.add_edges_from(edges)
    return nx.pagerank(g, tol=1e-14, max_iter=10_000, **kw)


def _l1(a, b):
    return sum(abs(a[k] - b[k]) for k in a)


def test_dataframe_pagerank_matches_networkx_on_hand_graph(spark):
    from funnel.pipelines.pagerank_job import pagerank_df

    # Stopping at an L1 change below 1e-8 leaves the ranks within d / (1 - d) x 1e-8 = 6e-8 of the fixed point.
    res = pagerank_df(spark, _edges_df(spark, EDGES, NODES), len(NODES), tol=1e-8)
    assert res.converged and res.iterations > 5
    ours = _ranks(res, NODES)
    assert _l1(ours, _nx(EDGES, NODES)) < 1e-6


def test_dataframe_pagerank_matches_networkx_with_personalisation_and_counted_duplicates(spark):
    from funnel.pipelines.pagerank_job import pagerank_df

    edges = random_graph(200, 700, seed=5)
    nodes = [f"n{i}" for i in range(200)]
    rng = np.random.default_rng(6)
    pers, dang = rng.random(200), rng.random(200)
    pers[:20] = 0
    p_df = spark.createDataFrame([(i, float(v)) for i, v in enumerate(pers)], "node long, weight double")
    d_df = spark.createDataFrame([(i, float(v)) for i, v in enumerate(dang)], "node long, weight double")
    # damping 0.6 converges in fewer (slow, one Spark job each) iterations; the semantics are the same
    res = pagerank_df(spark, _edges_df(spark, edges, nodes), 200, damping=0.6, tol=1e-10,
                      personalization=p_df, dangling=d_df, collapse_duplicates=False)
    ref = _nx(edges, nodes, multi=True, alpha=0.6, personalization=dict(zip(nodes, pers)),
              dangling=dict(zip(nodes, dang)))
    assert _l1(_ranks(res, nodes), ref) < 1e-6
    single = pagerank_graph(graph_from_edges(edges, nodes, collapse_duplicates=False), damping=0.6,
                            personalization=pers, dangling=dang)
    assert _l1(_ranks(res, nodes), single) < 1e-8


def test_pagerank_job_over_store_export(spark, tmp_path):
    """Store with links (some to pages outside it) -> export -> job -> pagerank.parquet the reader loads."""
    from funnel.core.store import Document, DocumentStore, Link
    from funnel.pipelines.pagerank_job import run_pagerank_job

    out = {}
    for s, d in EDGES:
        out.setdefault(s, []).append(Link(d))
    out.setdefault("b", []).append(Link("http://outside.example/"))
    with DocumentStore(tmp_path / "store.sqlite") as store:
        store.put_docs(Document(n, text=n, outlinks=out.get(n, [])) for n in NODES)
        store.export_parquet(tmp_path / "parquet")
    target = tmp_path / "features" / "pagerank.parquet"
    res = run_pagerank_job(spark, tmp_path / "parquet", target, damping=0.5, tol=1e-10, method="dataframe")
    assert res.converged and res.method == "dataframe" and target.is_dir()
    got = load_pagerank(tmp_path)
    assert _l1(got, _nx(EDGES, NODES, alpha=0.5)) < 1e-6
    # small graph, method auto: iterated on the driver, same answer; the folder becomes a file
    res = run_pagerank_job(spark, tmp_path / "parquet", target, damping=0.5, tol=1e-10)
    assert res.method == "driver" and target.is_file()
    assert _l1(load_pagerank(target), got) < 1e-8
    run_pagerank_job(spark, tmp_path / "parquet", target, damping=0.5, max_iter=1, method="dataframe")
    rerun = load_pagerank(target)  # a rerun replaced the output
    assert set(rerun) == set(got) and _l1(rerun, got) > 1e-4

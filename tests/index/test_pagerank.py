"""funnel.index.pagerank against networkx.pagerank, storage round trip and the BM25 prior."""
from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from funnel.core.errors import InputError
from funnel.index.pagerank import (adjacency, graph_from_edges, load_pagerank, pagerank, pagerank_edges, pagerank_graph,
                            pagerank_prior, save_pagerank)

# dangling nodes (d, e), a self-loop (a), duplicate edges (a->b twice), two components (x-y-z), an isolated node (q)
EDGES = [("a", "b"), ("a", "b"), ("a", "a"), ("a", "c"), ("b", "c"), ("c", "a"), ("c", "d"), ("b", "e"),
         ("x", "y"), ("y", "z"), ("z", "x"), ("z", "z")]
NODES = ["a", "b", "c", "d", "e", "x", "y", "z", "q"]


def _nx(edges, nodes, multi=False, **kw):
    g = nx.MultiDiGraph() if multi else nx.DiGraph()
    g.add_nodes_from(nodes)
    g.add_edges_from(edges)
    return nx.pagerank(g, tol=1e-14, max_iter=10_000, **kw)


def _l1(a: dict, b: dict) -> float:
    assert set(a) == set(b)
    return sum(abs(a[k] - b[k]) for k in a)


def random_graph(n: int, m: int, seed: int) -> list[tuple[str, str]]:
    """A skewed random graph: many dangling nodes, self-loops and duplicates occur by chance."""
    rng = np.random.default_rng(seed)
    src = rng.integers(0, n // 2, m)  # half the nodes have no out-links
    dst = (rng.pareto(1.2, m) * 3).astype(int) % n
    return [(f"n{s}", f"n{d}") for s, d in zip(src, dst)]


@pytest.mark.parametrize("backend", ["scipy", "torch"])
def test_matches_networkx_on_hand_graph(backend):
    ours = pagerank_graph(graph_from_edges(EDGES, NODES), backend=backend)
    ref = _nx(EDGES, NODES)
    assert _l1(ours, ref) < 1e-6
    assert abs(sum(ours.values()) - 1) < 1e-9
    # the isolated node only gets teleport and dangling mass: less than a node with in-links
    assert ours["q"] < ours["a"]


def test_duplicate_edges_collapse_like_digraph_or_count_like_multidigraph():
    collapsed = pagerank_graph(graph_from_edges(EDGES, NODES))
    counted = pagerank_graph(graph_from_edges(EDGES, NODES, collapse_duplicates=False))
    assert _l1(collapsed, _nx(EDGES, NODES)) < 1e-6
    assert _l1(counted, _nx(EDGES, NODES, multi=True)) < 1e-6
    assert _l1(collapsed, counted) > 1e-3  # the choice matters on this graph


def test_matches_networkx_on_random_graphs_with_personalisation_and_dangling():
    edges = random_graph(400, 1500, seed=1)
    nodes = [f"n{i}" for i in range(400)]
    graph = graph_from_edges(edges, nodes)
    assert (np.asarray(graph.adj.sum(axis=1)).ravel() == 0).sum() > 100
    assert graph.adj.diagonal().sum() > 0
    assert _l1(pagerank_graph(graph, damping=0.9), _nx(edges, nodes, alpha=0.9)) < 1e-6

    rng = np.random.default_rng(2)
    pers, dang = rng.random(400), rng.random(400)
    pers[:50] = 0
    ours = pagerank_graph(graph, personalization=pers, dangling=dang)
    ref = _nx(edges, nodes, personalization=dict(zip(nodes, pers)), dangling=dict(zip(nodes, dang)))
    assert _l1(ours, ref) < 1e-6


@pytest.mark.parametrize("n", [400, 70_000])  # 32-bit sort keys (n * n < 2**32), then 64-bit ones
@pytest.mark.parametrize("multi", [False, True])
def test_pagerank_from_edge_arrays_matches_networkx(n, multi):
    """The direct path (``P^T`` built from the edges) on a graph with dangling nodes, self-loops,
    duplicates and nodes without any link, against networkx and against the adjacency path."""
    edges = random_graph(400, 1500, seed=4)
    src = np.array([int(s[1:]) for s, _ in edges])
    dst = np.array([int(d[1:]) for _, d in edges])
    if n > 400:  # the same graph spread over a large id range: most nodes isolated
        src, dst = src * 170, dst * 170
    nodes = [f"n{i}" for i in range(n)]
    res = pagerank_edges(src, dst, n, tol=1e-14, max_iter=10_000, collapse_duplicates=not multi)
    assert res.converged
    ref = _nx([(f"n{s}", f"n{d}") for s, d in zip(src, dst)], nodes, multi=multi)
    assert _l1(dict(zip(nodes, res.scores.tolist())), ref) < 1e-6
    via_adj = pagerank(adjacency(src, dst, n, collapse_duplicates=not multi), tol=1e-14, max_iter=10_000)
    assert np.abs(res.scores - via_adj.scores).sum() < 1e-12
    with pytest.raises(InputError):
        pagerank_edges(np.array([0]), np.array([n]), n)
    with pytest.raises(InputError):
        pagerank_edges(src, dst, n, damping=1.0)


def test_networkx_stopping_point_and_iterations():
    """tol = N * nx_tol reproduces networkx's own stopping rule and hence its answer to 1e-12."""
    edges = random_graph(300, 1200, seed=3)
    nodes = [f"n{i}" for i in range(300)]
    g = nx.DiGraph()
    g.add_nodes_from(nodes)
    g.add_edges_from(edges)
    ref = nx.pagerank(g)  # default tol 1e-6
    res = pagerank(graph_from_edges(edges, nodes).adj, tol=300 * 1e-6, max_iter=100)
    assert res.converged and 1 < res.iterations < 100
    assert _l1(dict(zip(nodes, res.scores)), ref) < 1e-12


def test_edges_outside_the_node_list_are_dropped_and_node_becomes_dangling():
    graph = graph_from_edges([("a", "b"), ("b", "http://elsewhere/"), ("b", "a")], ["a", "b", "c"])
    assert graph.n_edges == 2
    graph = graph_from_edges([("a", "b"), ("b", "http://elsewhere/")], ["a", "b"])
    assert graph.adj.sum(axis=1).tolist() == [1.0, 0.0]


def test_bad_inputs_are_refused():
    adj = adjacency(np.array([0, 1]), np.array([1, 0]), 2)
    with pytest.raises(InputError, match="damping"):
        pagerank(adj, damping=1.0)
    with pytest.raises(InputError, match="personalization"):
        pagerank(adj, personalization=np.array([1.0, 2.0, 3.0]))
    with pytest.raises(InputError, match="dangling"):
        pagerank(adj, dangling=np.array([0.0, 0.0]))
    with pytest.raises(InputError, match=r"\[0, 2\)"):
        adjacency(np.array([0]), np.array([2]), 2)
    assert pagerank(adjacency(np.zeros(0), np.zeros(0), 0)).scores.shape == (0,)


def test_not_converging_reports_it():
    res = pagerank(adjacency(np.array([0, 1]), np.array([1, 2]), 3), tol=1e-30, max_iter=3)
    assert not res.converged and res.iterations == 3


def test_save_and_load_round_trip(tmp_path):
    assert load_pagerank(tmp_path) == {}  # a home without features
    path = save_pagerank(tmp_path / "features" / "pagerank.parquet", ["a", "b"], np.array([0.25, 0.75]))
    assert path.exists()
    assert load_pagerank(tmp_path) == {"a": 0.25, "b": 0.75}
    assert load_pagerank([tmp_path / "missing.parquet", path]) == {"a": 0.25, "b": 0.75}
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(InputError, match="bad.parquet"):
        load_pagerank(tmp_path / "bad.parquet")


def test_pagerank_prior():
    bm25 = np.array([10.0, 10.0, 10.0, 5.0])
    pr = np.array([0.5, 0.25, 0.0, 0.5])  # graph of 4 nodes: average is 0.25
    out = pagerank_prior(bm25, pr, weight=1.0, n_nodes=4)
    np.testing.assert_allclose(out, [10 + np.log(2), 10.0, 10.0, 5 + np.log(2)])
    np.testing.assert_array_equal(pagerank_prior(bm25, pr, 0.0, 4), bm25)
    with pytest.raises(InputError):
        pagerank_prior(bm25, pr[:2], 1.0, 4)

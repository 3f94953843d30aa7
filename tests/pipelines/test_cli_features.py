"""`funnel pipeline index|pagerank|features` through the real CLI, on a small site loaded from HTML files."""
from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from funnel.cli.main import main
from funnel.core.store import DocumentStore
from funnel.index.analyze import Analyzer
from funnel.index.builder import doc_text
from funnel.index.pagerank import graph_from_edges, load_pagerank, pagerank_graph
from funnel.pipelines.site_files import load_site, parse_page

pytestmark = pytest.mark.spark

PAGES = {
    "index.html": '<title>Home</title><a href="a.html">A</a> <a href="b/c.html#x">C</a> <a href="http://x.org/">out</a>',
    "a.html": '<title>Alpha</title><p>alpha apples</p><a href="index.html">home</a><a href="a.html">self</a>',
    "b/c.html": '<title>Gamma</title><script>var s="hidden";</script>gamma <a href="../index.html?q=1">up</a>'
                '<a href="../index.html">up again</a>',
    "b/d.html": "<title>Delta</title>delta has no links",
}


@pytest.fixture
def site(tmp_path):
    root = tmp_path / "site"
    for rel, html in PAGES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(f"<html><body>{html}</body></html>")
    return root


def test_parse_page_resolves_links_and_drops_scripts():
    title, text, links = parse_page(f"<html><body>{PAGES['b/c.html']}</body></html>", "http://h/b/c.html")
    assert title == "Gamma" and "hidden" not in text and "gamma" in text
    assert [link.url for link in links] == ["http://h/index.html", "http://h/index.html"]


def test_pipeline_cli_index_pagerank_features(spark, site, tmp_path, capsys):
    home = tmp_path / "home"
    with DocumentStore(home / "store.sqlite") as store:
        assert load_site(store, site, "http://h/", progress=False) == 4
        edges = list(store.iter_links())
        nodes = [d.doc_id for d in store.iter_docs()]
    # damping 0.5 converges in fewer iterations (each one is a Spark job); the semantics are the same
    base = ["--home", str(home), "-q", "--set", "pagerank.damping=0.5", "--set", "pagerank.tol=1e-9"]
    assert main(base + ["pipeline", "index", "--master", "local[2]"]) == 0
    assert main(base + ["pipeline", "pagerank"]) == 0  # small graph: iterated on the driver
    assert main(base + ["pipeline", "features"]) == 0
    assert main(base + ["search", "apples", "--json"]) == 0
    assert '"doc_id": "http://h/a.html"' in capsys.readouterr().out

    expected = pagerank_graph(graph_from_edges(edges, nodes), damping=0.5)
    got = load_pagerank(home)
    assert set(got) == set(nodes)
    assert sum(abs(got[k] - expected[k]) for k in nodes) < 1e-6
    rows = {r["doc_id"]: r for r in pq.read_table(home / "features" / "doc_features.parquet").to_pylist()}
    home_page = rows["http://h/index.html"]
    assert home_page["n_outlinks"] == 3 and home_page["n_inlinks"] == 2  # a and c link home (c twice: once)
    assert rows["http://h/b/d.html"]["n_inlinks"] == 0 and rows["http://h/b/d.html"]["n_outlinks"] == 0
    with DocumentStore(home / "store.sqlite", readonly=True) as store:
        alpha = store.get("http://h/a.html")
    assert rows["http://h/a.html"]["n_tokens"] == len(Analyzer()(doc_text(alpha))) > 2  # as the index counts
    assert abs(rows["http://h/a.html"]["pagerank"] - expected["http://h/a.html"]) < 1e-6


def test_pipeline_cli_errors(tmp_path, capsys):
    assert main(["--home", str(tmp_path / "empty"), "pipeline", "pagerank"]) == 2
    assert "does not exist" in capsys.readouterr().err

"""End to end: the Python docs (Debian python3.11-doc) served on loopback -> crawled -> Parquet ->
Spark index + PageRank -> `funnel search` answers, and the top PageRank pages are the site's hubs."""
from __future__ import annotations

import functools
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

from funnel.cli.main import main
from funnel.core.config import CrawlConfig
from funnel.core.store import DocumentStore
from funnel.index.pagerank import load_pagerank

pytestmark = [pytest.mark.spark, pytest.mark.slow]


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def python_docs_url():
    from funnel.crawler.sites import debian_site
    from funnel.core.errors import FunnelError

    try:
        root = debian_site("python3.11-doc")
    except FunnelError as exc:
        pytest.skip(f"python3.11-doc not available: {exc}")
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def test_crawl_spark_index_pagerank_search(spark, python_docs_url, tmp_path, capsys):
    from funnel.crawler.crawl import crawl

    home = tmp_path / "home"
    with DocumentStore(home / "store.sqlite") as store:
        stats = crawl([python_docs_url + "index.html"], store, CrawlConfig(allow_private=True, max_pages=2000),
                      home / "crawl" / "frontier.sqlite", progress=False)
        n_docs = store.count()
        n_links = sum(1 for _ in store.iter_links())
    assert n_docs >= 500, stats  # the package has ~530 pages
    assert n_links > 10 * n_docs

    base = ["--home", str(home), "-q", "--set", "pagerank.tol=1e-8"]
    assert main(base + ["pipeline", "index"]) == 0
    assert main(base + ["pipeline", "pagerank"]) == 0
    capsys.readouterr()
    assert main(base + ["search", "list comprehension", "-k", "5", "--json"]) == 0
    out = capsys.readouterr().out
    assert out.count('"rank"') == 5 and "tutorial" in out

    pr = load_pagerank(home)
    assert len(pr) == n_docs and abs(sum(pr.values()) - 1) < 1e-6
    top = [u[len(python_docs_url):] for u, _ in sorted(pr.items(), key=lambda kv: -kv[1])[:10]]
    print("top PageRank pages:", top)
    hubs = {"index.html", "contents.html", "glossary.html", "genindex.html", "library/index.html",
            "py-modindex.html", "search.html", "copyright.html", "about.html", "bugs.html"}
    assert len(hubs & set(top)) >= 3, top

"""A real site: Debian's python3.11-doc HTML served on 127.0.0.1, crawled completely, link graph in the store."""
from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from aiohttp import web

from funnel.crawler.crawl import crawl
from funnel.crawler.frontier import Frontier, State
from funnel.crawler.sites import debian_site
from funnel.core.config import CrawlConfig
from funnel.core.store import DocumentStore
from tests.crawler.hostile_site import serve_app


@pytest.mark.slow
def test_python_docs_crawled_completely(tmp_path):
    root = debian_site("python3.11-doc")
    app = web.Application()
    app.router.add_static("/", root)
    cfg = CrawlConfig(concurrency=8, per_host_concurrency=8, allow_private=True, max_pages=5000, max_depth=1000)
    with serve_app(app) as base:
        with DocumentStore(tmp_path / "store.sqlite") as store:
            stats = crawl([base + "/index.html"], store, cfg, tmp_path / "frontier.sqlite", progress=False)
            docs = {d.doc_id: d for d in store.iter_docs()}
            links = list(store.iter_links())
    rows = Frontier(tmp_path / "frontier.sqlite").rows()
    assert stats.frontier_left == 0 and not [r for r in rows if r[2] == State.QUEUED]
    # aiohttp serves a pre-compressed NAME.gz for NAME (the package ships whatsnew/changelog.html.gz)
    files = [*root.rglob("*.html"), *root.rglob("*.html.gz")]
    on_disk = {p.relative_to(root).as_posix().removesuffix(".gz") for p in files}
    paths = {unquote(urlsplit(d).path).lstrip("/") for d in docs}
    assert paths <= on_disk and len(paths) >= 500  # ~530 pages; every stored page is a real file
    # Complete: every link target is a stored page or a recorded failure whose file really is missing.
    failed = {r[0]: r for r in rows if r[2] in (State.FAILED, State.SKIPPED)}
    for _, dst in links:
        if dst not in docs:
            assert dst in failed, dst
            if failed[dst][3] == 404:
                assert unquote(urlsplit(dst).path).lstrip("/") not in on_disk
    assert len(links) > 10_000
    # the graph has the hubs one expects: every page links to the general index and the module index
    indegree: dict[str, int] = {}
    for _, dst in links:
        indegree[dst] = indegree.get(dst, 0) + 1
    top = sorted(indegree, key=indegree.get, reverse=True)[:6]
    assert base + "/genindex.html" in top and base + "/index.html" in top
    assert docs[base + "/library/functions.html"].title.startswith("Built-in Functions")
    assert "print(" in docs[base + "/library/functions.html"].text

"""The crawler against a real hostile site on 127.0.0.1: each trap, and exactly what the store holds after."""
from __future__ import annotations

from dataclasses import replace

import pytest

from funnel.crawler.crawl import crawl
from funnel.crawler.frontier import Frontier, State
from funnel.core.config import CrawlConfig
from funnel.core.store import DocumentStore
from tests.crawler.hostile_site import HostileSite, serve_app

CFG = CrawlConfig(concurrency=4, per_host_concurrency=4, max_depth=4, max_bytes=300_000, connect_timeout=2.0,
                  read_timeout=1.0, retries=1, retry_backoff=0.05, allow_private=True, max_pages=1000)


@pytest.fixture(scope="module")
def crawled(tmp_path_factory):
    """One crawl of the hostile site (module-scoped: every test below reads the same result)."""
    site = HostileSite()
    home = tmp_path_factory.mktemp("crawl")
    with serve_app(site.app()) as base:
        with DocumentStore(home / "store.sqlite") as store:
            stats = crawl([base + "/"], store, CFG, home / "frontier.sqlite", progress=False)
    store = DocumentStore(home / "store.sqlite", readonly=True)
    frontier = {row[0]: row for row in Frontier(home / "frontier.sqlite").rows()}
    return base, site, store, frontier, stats


def test_store_holds_exactly_the_good_pages(crawled):
    base, site, store, frontier, stats = crawled
    docs = {d.doc_id: d for d in store.iter_docs()}
    dup = {f"{base}/dup/a.html", f"{base}/dup/b.html"} & set(docs)
    assert len(dup) == 1  # same content under two URLs: stored once
    expected = {base + p for p in [
        "/", "/redirect/final.html", "/flaky", "/charset/wrong", "/charset/missing", "/charset/meta", "/plain.txt",
        "/calendar?month=0", "/calendar?month=1", "/calendar?month=2", "/calendar?month=3",
        "/near/a.html", "/near/b.html", "/page.html?a=1&b=2", "/canon/article.html", "/base/index.html",
        "/other/x.html"]} | dup
    assert set(docs) == expected
    assert all(d.source == "crawl" and d.status == 200 and d.fetched_at and len(d.content_hash) == 64
               for d in docs.values())
    assert stats.stored == len(expected) and stats.failed == 6  # loop, 404, 500, slow, big, bomb
    assert frontier[base + "/"][2] == State.STORED


def test_robots_disallow_and_crawl_delay(crawled):
    base, site, store, frontier, _ = crawled
    assert site.requests["/private/secret.html"] == 0
    assert frontier[base + "/private/secret.html"][2] == State.SKIPPED
    assert "robots.txt" in frontier[base + "/private/secret.html"][5]
    assert site.requests["/robots.txt"] == 1
    assert site.times[0][1] == "/robots.txt"
    # Every later request is paced. Arrival times are taken in the server thread, which the crawler's loop
    # can starve for a moment (two paced requests then log together), so check the mean and the median gap.
    gaps = sorted(b - a for (a, _), (b, _) in zip(site.times[1:], site.times[2:]))
    assert sum(gaps) / len(gaps) >= site.crawl_delay * 0.95
    assert gaps[len(gaps) // 2] >= site.crawl_delay * 0.8


def test_redirects_loops_and_errors(crawled):
    base, site, store, frontier, _ = crawled
    final = store.get(base + "/redirect/final.html")
    assert final.url == base + "/redirect/final.html" and final.meta["redirected_from"] == base + "/redirect/a"
    assert frontier[base + "/redirect/a"][2] == State.ALIAS and frontier[base + "/redirect/a"][4] == final.doc_id
    assert frontier[base + "/loop/a"][2] == State.FAILED and "redirect loop" in frontier[base + "/loop/a"][5]
    assert site.requests["/missing"] == 1 and frontier[base + "/missing"][3] == 404  # 4xx: not retried
    assert site.requests["/error500"] == 1 + CFG.retries and frontier[base + "/error500"][3] == 500
    assert site.requests["/flaky"] == 2 and store.get(base + "/flaky").text == "recovered after 503"
    assert site.requests["/slow"] == 1 + CFG.retries and "timeout" in frontier[base + "/slow"][5]


def test_size_caps_and_gzip_bomb(crawled):
    base, site, store, frontier, _ = crawled
    for path in ("/big", "/bomb"):
        row = frontier[base + path]
        assert row[2] == State.FAILED and row[5].startswith("too large"), row
        assert store.get(base + path) is None


def test_content_types_and_charsets(crawled):
    base, site, store, frontier, _ = crawled
    assert frontier[base + "/file.pdf"][2] == State.SKIPPED and "application/pdf" in frontier[base + "/file.pdf"][5]
    assert store.get(base + "/plain.txt").text == "just plain text here"
    assert "Le café du coin sert un crème brûlée" in store.get(base + "/charset/wrong").text  # header lied
    assert store.get(base + "/charset/wrong").title == "Café"
    assert store.get(base + "/charset/missing").text == "naïve 日本語のテキスト"
    assert store.get(base + "/charset/meta").text.startswith("Grüße aus München, über alles.")


def test_scripts_dropped_and_text_clean(crawled):
    base, site, store, frontier, _ = crawled
    home = store.get(base + "/")
    assert home.title == "Home"
    assert "evil" not in home.text and "color" not in home.text and home.text.startswith("secret redirect chain")


def test_spider_trap_bounded_by_depth(crawled):
    base, site, store, frontier, _ = crawled
    months = sorted(int(q.split("=")[1]) for q in site.requests if q.startswith("/calendar"))
    assert months == [0, 1, 2, 3]  # the seed is depth 0; month 3 is at depth 4 = max_depth
    assert store.get(base + "/calendar?month=3").outlinks[0].url == base + "/calendar?month=4"
    assert not frontier.get(base + "/calendar?month=4")


def test_canonicalisation_dedup_and_canonical_links(crawled):
    base, site, store, frontier, _ = crawled
    assert site.requests["/page.html?a=1&b=2"] == 1 and sum(
        n for q, n in site.requests.items() if q.startswith("/page.html")) == 1  # tracking params, order, fragment
    assert store.get(base + "/canon/print.html") is None and store.get(base + "/canon/article.html").title == "Article"
    assert frontier[base + "/canon/print.html"][4] == base + "/canon/article.html"
    kept = store.get(base + "/dup/a.html") or store.get(base + "/dup/b.html")
    other = base + ("/dup/b.html" if kept.doc_id.endswith("a.html") else "/dup/a.html")
    assert frontier[other][2] == State.ALIAS and frontier[other][4] == kept.doc_id
    near = [store.get(base + "/near/a.html").meta, store.get(base + "/near/b.html").meta]
    assert sorted(m.get("near_duplicate_of", "") for m in near) == ["", base + "/near/a.html"] or \
        sorted(m.get("near_duplicate_of", "") for m in near) == ["", base + "/near/b.html"]
    assert "near_duplicate_of" not in store.get(base + "/").meta
    assert store.get(base + "/other/x.html").meta["depth"] == 2  # <base href> resolved the relative link


def test_outlinks_are_in_scope_canonical_documents(crawled):
    base, site, store, frontier, _ = crawled
    links = {link.url: link.anchor for link in store.outlinks(base + "/")}
    kept_dup = next(d for d in (base + "/dup/a.html", base + "/dup/b.html") if store.get(d))
    assert set(links) == {base + p for p in [
        "/private/secret.html", "/redirect/final.html", "/loop/a", "/missing", "/error500", "/flaky", "/slow",
        "/big", "/bomb", "/file.pdf", "/charset/wrong", "/charset/missing", "/charset/meta", "/plain.txt",
        "/calendar?month=0", "/near/a.html", "/near/b.html", "/page.html?a=1&b=2", "/canon/article.html",
        "/base/index.html"]} | {kept_dup}  # no offsite, ftp, self or nofollow link; aliases rewritten
    assert links[base + "/near/a.html"] == "near a"
    assert site.requests["/nofollowed.html"] == 0


def test_private_addresses_refused_by_default(tmp_path):
    site = HostileSite()
    with serve_app(site.app()) as base:
        with DocumentStore(tmp_path / "store.sqlite") as store:
            stats = crawl([base + "/"], store, replace(CFG, allow_private=False), tmp_path / "f.sqlite",
                          progress=False)
            assert store.count() == 0
    assert sum(site.requests.values()) == 0  # not even robots.txt was requested
    (row,) = Frontier(tmp_path / "f.sqlite").rows()
    # kept queued, not skipped for good: the same crawl resumed with allow_private fetches it
    assert row[2] == State.QUEUED and "loopback" in row[5]
    assert stats.stored == 0 and stats.deferred == 1


def test_max_pages_and_resume(tmp_path):
    site = HostileSite()
    site.crawl_delay = 0.0
    cfg = replace(CFG, max_pages=3)
    with serve_app(site.app()) as base:
        with DocumentStore(tmp_path / "store.sqlite") as store:
            first = crawl([base + "/"], store, cfg, tmp_path / "f.sqlite", progress=False)
            assert first.fetched == 3 and first.frontier_left > 0
            second = crawl([], store, replace(cfg, max_pages=8), tmp_path / "f.sqlite", progress=False,
                           explicit={"max_pages"})
            frontier = Frontier(tmp_path / "f.sqlite")
            assert frontier.get_meta("scope") == {"hosts": [base.removeprefix("http://")], "prefixes": []}
            assert not [r for r in frontier.rows() if "example.com" in r[0]]  # the resumed crawl kept its scope
            assert second.fetched == 5  # the limit counts fetches over all runs of one frontier
            ids = [d.doc_id for d in store.iter_docs()]
            assert len(ids) == len(set(ids)) == first.stored + second.stored


def test_sitemaps_per_host_limit_user_agent_and_noindex(tmp_path):
    import asyncio

    from aiohttp import web

    from tests.crawler.hostile_site import page

    state = {"now": 0, "max": 0, "agents": set()}

    async def slow_page(request):
        state["agents"].add(request.headers.get("User-Agent"))
        state["now"] += 1
        state["max"] = max(state["max"], state["now"])
        await asyncio.sleep(0.05)
        state["now"] -= 1
        i = int(request.match_info["i"])
        links = "".join(f'<a href="/p/{j}.html">{j}</a>' for j in range(12))
        head = '<meta name="robots" content="noindex">' if i == 3 else ""
        return web.Response(text=page(f"P{i}", f"<p>page {i} " + "lorem ipsum " * i + f"</p>{links}", head),
                            content_type="text/html")

    async def robots(request):
        return web.Response(text="User-agent: *\nAllow: /\nSitemap: /sitemap.xml\n")

    async def sitemap(request):
        return web.Response(text='<?xml version="1.0"?><urlset><url><loc>/orphan.html</loc></url>'
                                 f'<url><loc>{request.url.origin()}/orphan.html</loc></url></urlset>',
                            content_type="application/xml")

    async def orphan(request):
        return web.Response(text=page("Orphan", "<p>only the sitemap links here</p>"), content_type="text/html")

    app = web.Application()
    app.router.add_get("/robots.txt", robots)
    app.router.add_get("/sitemap.xml", sitemap)
    app.router.add_get("/orphan.html", orphan)
    app.router.add_get("/p/{i}.html", slow_page)
    cfg = replace(CFG, concurrency=8, per_host_concurrency=2, sitemaps=True, user_agent="FunnelTest/1.0")
    with serve_app(app) as base:
        with DocumentStore(tmp_path / "store.sqlite") as store:
            crawl([base + "/p/0.html"], store, cfg, tmp_path / "f.sqlite", progress=False)
            ids = {d.doc_id for d in store.iter_docs()}
    assert ids == {f"{base}/p/{i}.html" for i in range(12) if i != 3} | {base + "/orphan.html"}
    assert state["max"] == 2 and state["agents"] == {"FunnelTest/1.0"}
    rows = {r[0]: r for r in Frontier(tmp_path / "f.sqlite").rows()}
    assert rows[base + "/p/3.html"][2] == State.SKIPPED and rows[base + "/p/3.html"][5] == "noindex"


def test_fetch_deadline_cuts_off_a_drip_server(tmp_path):
    """A server dripping 1 byte every 0.2 s dodges the read timeout; crawl.fetch_deadline ends each such
    request (not retried), counted as timeouts in the summary, while the other pages are crawled."""
    import asyncio
    import time

    from aiohttp import web

    from tests.crawler.hostile_site import page

    hits: list[str] = []

    async def index(request):
        links = "".join(f'<a href="/drip/{i}">drip {i}</a>' for i in range(3)) + '<a href="/ok.html">ok</a>'
        return web.Response(text=page("Index", links), content_type="text/html")

    async def drip(request):
        hits.append(request.path)
        resp = web.StreamResponse(headers={"Content-Type": "text/html"})
        await resp.prepare(request)
        try:
            for _ in range(50):  # 10 s in all
                await resp.write(b"x")
                await asyncio.sleep(0.2)
        except (ConnectionResetError, RuntimeError):
            pass
        return resp

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_get("/drip/{i}", drip)
    app.router.add_get("/ok.html", HostileSite.html(page("OK", "<p>a normal page</p>")))
    cfg = replace(CFG, read_timeout=1.0, fetch_deadline=1.0, retries=2)
    with serve_app(app) as base:
        with DocumentStore(tmp_path / "store.sqlite") as store:
            t0 = time.monotonic()
            stats = crawl([base + "/"], store, cfg, tmp_path / "f.sqlite", progress=False)
            elapsed = time.monotonic() - t0
            assert {d.doc_id for d in store.iter_docs()} == {base + "/", base + "/ok.html"}
    assert elapsed < 6, elapsed
    assert sorted(hits) == ["/drip/0", "/drip/1", "/drip/2"]  # each cut off once, not retried
    assert stats.timeouts == 3 and stats.failed == 3
    assert "3 failed (3 timed out)" in stats.summary() and "timeout (crawl.fetch_deadline): 3" in stats.summary()
    rows = {r[0]: r for r in Frontier(tmp_path / "f.sqlite").rows()}
    assert rows[base + "/drip/0"][2] == State.FAILED and "crawl.fetch_deadline" in rows[base + "/drip/0"][5]

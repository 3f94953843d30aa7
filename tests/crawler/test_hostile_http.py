"""Hostile HTTP servers on 127.0.0.1, each alone, beyond the one-site tour of `test_crawl.py`: a wide
spider trap and a URL-growing one, a streamed gzip bomb of gigabytes, charsets that lie (header against
bytes, ``<meta>`` against header), a redirect chain without end, and robots.txt answering 503 or
never. Each test says what stops the fault and checks the crawl went on with the rest."""
from __future__ import annotations

import asyncio
import random
import resource
import time
import zlib
from collections import Counter
from dataclasses import replace

from aiohttp import web

from funnel.crawler.crawl import crawl
from funnel.crawler.frontier import Frontier, State
from funnel.core.config import CrawlConfig
from funnel.core.store import DocumentStore
from tests.crawler.hostile_site import HostileSite, page, serve_app

CFG = CrawlConfig(concurrency=4, per_host_concurrency=4, max_depth=50, max_bytes=300_000, connect_timeout=2.0,
                  read_timeout=1.0, retries=1, retry_backoff=0.05, allow_private=True, max_pages=1000,
                  robots_retries=0, robots_retry_wait=0.1)


def _robots_allow_all(hits: Counter):
    async def robots(request):
        hits["/robots.txt"] += 1
        return web.Response(text="User-agent: *\nAllow: /\n")
    return robots


def _crawl(app: web.Application, tmp_path, cfg: CrawlConfig, seed: str = "/"):
    with serve_app(app) as base:
        with DocumentStore(tmp_path / "store.sqlite") as store:
            stats = crawl([base + seed], store, cfg, tmp_path / "f.sqlite", progress=False)
            docs = {d.doc_id: d for d in store.iter_docs()}
    rows = {r[0]: r for r in Frontier(tmp_path / "f.sqlite").rows()}
    return base, stats, docs, rows


def test_wide_spider_trap_stops_at_the_page_cap(tmp_path):
    """Every page links to 30 freshly generated pages (a calendar or session-id trap without end, at any
    depth): crawl.max_pages stops the fetching, however many URLs were queued."""
    hits: Counter = Counter()
    rng = random.Random(0)

    async def trap(request):
        hits["page"] += 1
        links = "".join(f'<a href="/t/{rng.getrandbits(64):x}">x</a>' for _ in range(30))
        return web.Response(text=page("Trap", f"<p>trap page {request.path}</p>{links}"), content_type="text/html")

    app = web.Application()
    app.router.add_get("/robots.txt", _robots_allow_all(hits))
    app.router.add_get("/", trap)
    app.router.add_get("/t/{id}", trap)
    base, stats, docs, rows = _crawl(app, tmp_path, replace(CFG, max_pages=25))
    assert hits["page"] == 25 and stats.fetched == 25 and len(docs) == 25
    assert sum(1 for r in rows.values() if r[2] == State.QUEUED) > 500  # left queued, never fetched


def test_url_growing_trap_stops_at_max_url_length(tmp_path):
    """A relative link that adds a path segment on every page (/a/, /a/a/, ...): links longer than
    crawl.max_url_length are not followed, so the trap ends without a page cap."""
    hits: Counter = Counter()

    async def grow(request):
        hits["page"] += 1
        return web.Response(text=page("Grow", f"<p>{request.path}</p><a href='a/'>deeper</a>"),
                            content_type="text/html")

    app = web.Application()
    app.router.add_get("/robots.txt", _robots_allow_all(hits))
    app.router.add_get("/{tail:.*}", grow)
    base, stats, docs, rows = _crawl(app, tmp_path, replace(CFG, max_url_length=120))
    longest = max(len(u) for u in docs)
    assert longest <= 120 and len(base + "/") + 2 * hits["page"] > 120 - 2
    assert hits["page"] == len(docs) < 60


def test_streamed_gzip_bomb_of_gigabytes_is_cut_at_max_bytes(tmp_path):
    """4 GiB of zeros gzip-streamed (chunked, no Content-Length) in about 4 MB: the body cap counts
    decompressed bytes, so the fetch stops at crawl.max_bytes; the crawler's memory stays flat and the
    next page is crawled."""
    sent = Counter()

    async def bomb(request):
        resp = web.StreamResponse(headers={"Content-Type": "text/html", "Content-Encoding": "gzip"})
        await resp.prepare(request)
        comp = zlib.compressobj(1, zlib.DEFLATED, 31)
        zeros = bytes(1 << 20)
        try:
            for _ in range(4096):  # 4 GiB inflated
                chunk = comp.compress(zeros)
                if chunk:
                    await resp.write(chunk)
                    sent["compressed"] += len(chunk)
            await resp.write(comp.flush())
        except (ConnectionResetError, RuntimeError):
            pass  # the crawler hung up: what a bomb should see
        return resp

    async def index(request):
        return web.Response(text=page("Index", '<a href="/bomb">bomb</a> <a href="/ok.html">ok</a>'),
                            content_type="text/html")

    app = web.Application()
    app.router.add_get("/robots.txt", _robots_allow_all(Counter()))
    app.router.add_get("/", index)
    app.router.add_get("/bomb", bomb)
    app.router.add_get("/ok.html", HostileSite.html(page("OK", "<p>fine</p>")))
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB
    t0 = time.monotonic()
    base, stats, docs, rows = _crawl(app, tmp_path, replace(CFG, max_bytes=2_000_000, retries=0))
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    assert set(docs) == {base + "/", base + "/ok.html"}
    assert rows[base + "/bomb"][2] == State.FAILED and "after decompression" in rows[base + "/bomb"][5]
    assert grown_mib < 100, f"the crawler grew by {grown_mib:.0f} MiB"
    assert sent["compressed"] < 50 << 20 and time.monotonic() - t0 < 30  # it hung up early, not after 4 GiB


def test_charsets_that_contradict_the_bytes_or_each_other(tmp_path):
    """Declared latin-1 with UTF-8 bytes; a <meta> charset contradicting the header either way; a
    charset nobody knows; bytes valid in no declared charset: text decoded sensibly, never a crash."""
    french = "Grüße aus München: le café, la crème brûlée, l'économie"  # + a number: pages differ, none a duplicate
    russian = "Привет, мир: поисковая система"
    pages = {
        # header says latin-1, the bytes are UTF-8: latin-1 would turn "ü" into "Ã¼"
        "/latin1-header-utf8-bytes": (page("Café", f"<p>{french} 1</p>").encode("utf-8"),
                                      "text/html; charset=ISO-8859-1"),
        # header utf-8, <meta> latin-1, bytes latin-1: the header is wrong, the <meta> is right
        "/meta-right-header-wrong": (page("Café", f"<p>{french} 2</p>", '<meta charset="iso-8859-1">').encode("latin-1"),
                                     "text/html; charset=utf-8"),
        # header windows-1251 (right), <meta> latin-1 (wrong): the header wins, as in browsers
        "/header-right-meta-wrong": (page("Привет", f"<p>{russian}</p>",
                                          '<meta http-equiv="Content-Type" content="text/html; charset=iso-8859-1">'
                                          ).encode("cp1251"), "text/html; charset=windows-1251"),
        # a charset no codec knows, UTF-8 bytes
        "/unknown-charset": (page("Unknown", f"<p>{french} 3</p>").encode("utf-8"), "text/html; charset=x-klingon"),
        # bytes no charset fits (invalid UTF-8, undeclared)
        "/garbage": (b"<html><head><title>G</title></head><body><p>ok \xff\xfe\x80\x81 end</p></body></html>",
                     "text/html"),
    }

    def handler(path):
        async def h(request):
            body, ctype = pages[path]
            return web.Response(body=body, headers={"Content-Type": ctype})
        return h

    async def index(request):
        return web.Response(text=page("Index", "".join(f'<a href="{p}">{p}</a>' for p in pages)),
                            content_type="text/html")

    app = web.Application()
    app.router.add_get("/robots.txt", _robots_allow_all(Counter()))
    app.router.add_get("/", index)
    for path in pages:
        app.router.add_get(path, handler(path))
    base, stats, docs, rows = _crawl(app, tmp_path, CFG)
    assert set(docs) == {base + "/"} | {base + p for p in pages}
    assert docs[base + "/latin1-header-utf8-bytes"].text == french + " 1"
    assert docs[base + "/latin1-header-utf8-bytes"].title == "Café"
    assert docs[base + "/meta-right-header-wrong"].text == french + " 2"
    assert docs[base + "/header-right-meta-wrong"].text == russian
    assert docs[base + "/header-right-meta-wrong"].title == "Привет"
    assert docs[base + "/unknown-charset"].text == french + " 3"
    assert docs[base + "/garbage"].text.startswith("ok ") and docs[base + "/garbage"].text.endswith(" end")


def test_redirect_chain_without_end_stops_after_max_redirects(tmp_path):
    """/r/1 -> /r/2 -> /r/3 -> ... (never the same URL twice, so not a loop): followed crawl.max_redirects
    times, then recorded as failed with the reason; the other pages are crawled."""
    hits: Counter = Counter()

    async def hop(request):
        n = int(request.match_info["n"])
        hits["hop"] += 1
        raise web.HTTPFound(f"/r/{n + 1}")

    async def index(request):
        return web.Response(text=page("Index", '<a href="/r/1">chain</a> <a href="/ok.html">ok</a>'),
                            content_type="text/html")

    app = web.Application()
    app.router.add_get("/robots.txt", _robots_allow_all(Counter()))
    app.router.add_get("/", index)
    app.router.add_get("/r/{n}", hop)
    app.router.add_get("/ok.html", HostileSite.html(page("OK", "<p>fine</p>")))
    cfg = replace(CFG, max_redirects=5)
    base, stats, docs, rows = _crawl(app, tmp_path, cfg)
    assert set(docs) == {base + "/", base + "/ok.html"}
    assert hits["hop"] == cfg.max_redirects + 1  # the first request and 5 redirects followed, no more
    row = rows[base + "/r/1"]
    assert row[2] == State.FAILED and row[5] == "more than 5 redirects", row
    assert not any(u.startswith(base + "/r/") and u != base + "/r/1" for u in rows)  # hops never queued


def _robots_outage_crawl(tmp_path, robots_handler, cfg):
    hits: list[float] = []
    pages = Counter()

    async def robots(request):
        hits.append(time.monotonic())
        return await robots_handler(request)

    async def any_page(request):
        pages[request.path] += 1
        return web.Response(text=page("P", "<p>p</p>"), content_type="text/html")

    app = web.Application()
    app.router.add_get("/robots.txt", robots)
    app.router.add_get("/{tail:.*}", any_page)
    t0 = time.monotonic()
    base, stats, docs, rows = _crawl(app, tmp_path, cfg, seed="/a.html")
    return base, stats, docs, rows, hits, pages, time.monotonic() - t0


def test_robots_txt_503_disallows_the_host_and_backs_off(tmp_path):
    """RFC 9309 2.3.1.4: a robots.txt that answers 5xx means "disallow everything" for now. The crawler
    fetches no page, reads robots.txt again after 0.2, 0.4, 0.8 s (doubling), then keeps the URL queued
    for the next run and says so."""
    async def down(request):
        return web.Response(status=503, text="maintenance")

    cfg = replace(CFG, retries=0, robots_retries=3, robots_retry_wait=0.2)
    base, stats, docs, rows, hits, pages, elapsed = _robots_outage_crawl(tmp_path, down, cfg)
    assert not docs and not pages  # not a single page requested
    assert len(hits) == 1 + cfg.robots_retries
    gaps = [b - a for a, b in zip(hits, hits[1:])]
    for gap, wait in zip(gaps, (0.2, 0.4, 0.8)):
        assert wait * 0.9 <= gap < wait + 1.0, gaps
    assert stats.deferred == 1 and stats.stored == 0
    row = rows[base + "/a.html"]
    assert row[2] == State.QUEUED and "HTTP 503" in row[5]
    assert "kept queued: 1 URLs" in stats.summary()


def test_robots_txt_that_never_answers_is_a_timeout_not_a_hang(tmp_path):
    """robots.txt hangs: each read ends at the read timeout, counts as unreachable (disallow, back off),
    and the crawl ends in bounded time with the URL kept queued."""
    async def hang(request):
        await asyncio.sleep(4)  # far past the read timeout; short, so the server can stop
        return web.Response(text="User-agent: *\nAllow: /\n")

    cfg = replace(CFG, retries=0, read_timeout=0.5, fetch_deadline=2.0, robots_retries=1, robots_retry_wait=0.1)
    base, stats, docs, rows, hits, pages, elapsed = _robots_outage_crawl(tmp_path, hang, cfg)
    assert not docs and not pages
    assert len(hits) == 2 and elapsed < 10, (hits, elapsed)
    row = rows[base + "/a.html"]
    assert row[2] == State.QUEUED and row[5], row
    assert stats.deferred == 1

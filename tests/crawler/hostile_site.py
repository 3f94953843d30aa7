"""A synthetic hostile website for crawler tests, served for real by aiohttp on 127.0.0.1 in a thread.

`HostileSite` records every request (path with query, time) so tests can assert what was and was
not fetched. `serve_app` runs any aiohttp app in a background thread and yields its base URL.
"""
from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
import time
import zlib
from collections import Counter

from aiohttp import web

FRENCH = ("Le café du coin sert un crème brûlée délicieuse. À côté, la boulangerie propose des "
          "pâtisseries fraîches et un pain complet très réputé dans le quartier. Où est la gare ? "
          "Les élèves étudient l'économie européenne à l'université.")
LONG_TEXT = " ".join(f"paragraph {i} talks about ranking signals, crawlers, frontiers and indexes number {i * 7}"
                     for i in range(60))

NEAR_TEXT = " ".join(f"section {i} of the gardening guide covers tomatoes, roses, compost and watering day {i * 3}"
                     for i in range(60))


@functools.cache
def gzip_bomb(mib: int = 100) -> bytes:
    """`mib` MiB of spaces, gzip-compressed to about a thousandth of that (built in chunks, never whole)."""
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits 31: gzip container
    chunk = b" " * (1 << 20)
    return b"".join([comp.compress(chunk) for _ in range(mib)] + [comp.flush()])


def page(title: str, body: str, head: str = "") -> str:
    return f"<!doctype html><html><head><title>{title}</title>{head}</head><body>{body}</body></html>"


class HostileSite:
    """Every trap a crawler meets on the web, one route each. ``requests`` counts path?query hits."""

    crawl_delay = 0.05
    calendar_limit = 10_000  # effectively infinite

    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()
        self.times: list[tuple[float, str]] = []
        self.flaky_hits = 0
        gzip_bomb()  # built before serving: building it would stall the server thread mid-crawl

    def app(self) -> web.Application:
        app = web.Application()
        app.middlewares.append(self._log)
        app.router.add_get("/robots.txt", self.respond(lambda: web.Response(
            text=f"User-agent: *\nDisallow: /private/\nCrawl-delay: {self.crawl_delay}\n")))
        app.router.add_get("/", self.index)
        app.router.add_get("/private/secret.html", self.respond(lambda: web.Response(text=page("secret", "secret"),
                                                                          content_type="text/html")))
        app.router.add_get("/redirect/a", self.respond(lambda: web.HTTPMovedPermanently("/redirect/b")))
        app.router.add_get("/redirect/b", self.respond(lambda: web.HTTPFound("/redirect/final.html")))
        app.router.add_get("/redirect/final.html", self.html(page("Final", "<p>redirect target page</p>")))
        app.router.add_get("/loop/a", self.respond(lambda: web.HTTPFound("/loop/b")))
        app.router.add_get("/loop/b", self.respond(lambda: web.HTTPFound("/loop/a")))
        app.router.add_get("/error500", self.respond(lambda: web.Response(status=500, text="boom")))
        app.router.add_get("/flaky", self.flaky)
        app.router.add_get("/slow", self.slow)
        app.router.add_get("/big", self.big)
        app.router.add_get("/bomb", self.bomb)
        app.router.add_get("/file.pdf", self.respond(lambda: web.Response(body=b"%PDF-1.4 fake", content_type="application/pdf")))
        app.router.add_get("/charset/wrong", self.respond(lambda: web.Response(
            body=page("Café", f"<p>{FRENCH}</p>").encode("cp1252"), headers={"Content-Type": "text/html; charset=utf-8"})))
        app.router.add_get("/charset/missing", self.respond(lambda: web.Response(
            body=page("naïve", "<p>naïve 日本語のテキスト</p>").encode("utf-8"), headers={"Content-Type": "text/html"})))
        app.router.add_get("/charset/meta", self.respond(lambda: web.Response(
            body=page("über", f"<p>Grüße aus München, über alles. {FRENCH}</p>",
                      head='<meta charset="iso-8859-1">').encode("latin-1"), headers={"Content-Type": "text/html"})))
        app.router.add_get("/plain.txt", self.respond(lambda: web.Response(text="just   plain\ntext here", content_type="text/plain")))
        app.router.add_get("/calendar", self.calendar)
        app.router.add_get("/dup/a.html", self.html(page("Dup", f"<p>{LONG_TEXT}</p>")))
        app.router.add_get("/dup/b.html", self.html(page("Dup", f"<p>{LONG_TEXT}</p>")))
        app.router.add_get("/near/a.html", self.html(page("Near A", f"<p>{NEAR_TEXT} alpha</p>")))
        app.router.add_get("/near/b.html", self.html(page("Near B", f"<p>{NEAR_TEXT} omega</p>")))
        app.router.add_get("/page.html", self.html(page("Params", "<p>sorted query page</p>")))
        app.router.add_get("/canon/print.html", self.html(page(
            "Article (print)", "<p>the article, printable</p>", head='<link rel="canonical" href="/canon/article.html">')))
        app.router.add_get("/canon/article.html", self.html(page(
            "Article", "<p>the article</p>", head='<link rel="canonical" href="/canon/article.html">')))
        app.router.add_get("/base/index.html", self.html(page(
            "Base", '<a href="x.html">relative to base</a>', head='<base href="/other/">')))
        app.router.add_get("/other/x.html", self.html(page("X", "<p>reached through base href</p>")))
        app.router.add_get("/nofollowed.html", self.html(page("NF", "never fetched")))
        return app

    @web.middleware
    async def _log(self, request, handler):
        self.requests[request.path_qs] += 1
        self.times.append((time.monotonic(), request.path_qs))
        return await handler(request)

    @staticmethod
    def respond(make):
        """An async handler returning (or raising, for redirects) what `make()` builds."""
        async def handler(request):
            out = make()
            if isinstance(out, web.HTTPException) and out.status >= 300:
                raise out
            return out
        return handler

    @staticmethod
    def html(text: str):
        async def handler(request):
            return web.Response(text=text, content_type="text/html")
        return handler

    async def index(self, request):
        links = [
            ("/private/secret.html", "secret"), ("/redirect/a", "redirect chain"), ("/loop/a", "loop"),
            ("/missing", "404"), ("/error500", "500"), ("/flaky", "flaky"), ("/slow", "slow"),
            ("/big", "big"), ("/bomb", "bomb"), ("/file.pdf", "pdf"), ("/charset/wrong", "wrong charset"),
            ("/charset/missing", "missing charset"), ("/charset/meta", "meta charset"), ("/plain.txt", "plain"),
            ("/calendar?month=0", "calendar"), ("/dup/a.html", "dup a"), ("/dup/b.html", "dup b"),
            ("/near/a.html", "near a"), ("/near/b.html", "near b"),
            ("/page.html?utm_source=news&b=2&a=1#top", "tracked"), ("/page.html?a=1&b=2", "clean"),
            ("/canon/print.html", "print"), ("/canon/article.html", "article"), ("/base/index.html", "base"),
            ("http://example.com/offsite", "offsite"), ("ftp://127.0.0.1/file", "ftp"), ("#frag", "self"),
        ]
        body = "".join(f'<a href="{h}">{t}</a> ' for h, t in links)
        body += '<a rel="nofollow" href="/nofollowed.html">nofollow</a><script>document.write("evil")</script>'
        return web.Response(text=page("Home", body, head="<style>p{color:red}</style>"), content_type="text/html")

    async def flaky(self, request):
        self.flaky_hits += 1
        if self.flaky_hits == 1:
            return web.Response(status=503, text="try later")
        return web.Response(text=page("Flaky", "<p>recovered after 503</p>"), content_type="text/html")

    async def slow(self, request):
        await asyncio.sleep(2.5)
        return web.Response(text=page("Slow", "too late"), content_type="text/html")

    async def big(self, request):
        resp = web.StreamResponse(headers={"Content-Type": "text/html"})  # chunked: no Content-Length
        await resp.prepare(request)
        for _ in range(40):
            await resp.write(b"<p>" + b"x" * 16_000 + b"</p>")
        await resp.write_eof()
        return resp

    async def bomb(self, request):
        return web.Response(body=gzip_bomb(), headers={"Content-Type": "text/html", "Content-Encoding": "gzip"})

    async def calendar(self, request):
        month = int(request.query.get("month", "0"))
        return web.Response(text=page(f"Month {month}", f'<p>events of month {month}</p>'
                                                        f'<a href="/calendar?month={month + 1}">next month</a>'),
                            content_type="text/html")


@contextlib.contextmanager
def serve_app(app: web.Application, port: int = 0):
    """Serve `app` on 127.0.0.1 (`port`, or a free one) in a background thread; yields the base URL.
    Serving again on the same port brings a site that was down back up."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    box: dict = {}

    async def start():
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        box["runner"] = runner
        box["port"] = site._server.sockets[0].getsockname()[1]

    def run():
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    started.wait(10)
    try:
        yield f"http://127.0.0.1:{box['port']}"
    finally:
        asyncio.run_coroutine_threadsafe(box["runner"].cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)

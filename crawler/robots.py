"""robots.txt per host (RFC 9309, parsed by protego): may we fetch a URL, how long to wait, which sitemaps.

Fetched once per host, concurrently safe (one fetch per host however many workers ask). A 4xx
robots.txt means no rules; an unreachable one (5xx, timeout, refused) means the whole host is
disallowed, as RFC 9309 asks, but only for now: an unreachable robots.txt is a temporary failure
(a site briefly down), read again after ``retry_wait`` seconds, doubled each time, up to ``retries``
times; then `HostRules.retry_at` is None and the crawler keeps that host's URLs queued for the next
run instead of recording them as skipped. A refused address (loopback without ``allow_private``)
is not read again in the same run: nothing would change.
"""
from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass

from protego import Protego

from funnel.crawler.fetcher import Fetcher
from funnel.crawler.urls import canonicalize


@dataclass
class HostRules:
    parser: Protego | None  # None: everything allowed
    disallow_all: bool = False
    crawl_delay: float = 0.0
    sitemaps: tuple[str, ...] = ()
    unreachable: str | None = None  # why robots.txt could not be read (then everything is disallowed)
    retry_at: float | None = None  # unreachable: time.monotonic() when it may be read again; None: not this run

    def allowed(self, url: str, user_agent: str) -> bool:
        if self.disallow_all:
            return False
        return self.parser is None or self.parser.can_fetch(url, user_agent)


def parse_robots(text: str, user_agent: str) -> HostRules:
    parser = Protego.parse(text)
    delay = parser.crawl_delay(user_agent) or 0.0
    return HostRules(parser=parser, crawl_delay=float(delay), sitemaps=tuple(parser.sitemaps))


class RobotsCache:
    """The rules of every host met during a crawl."""

    def __init__(self, fetcher: Fetcher, user_agent: str, obey: bool = True, retries: int = 3,
                 retry_wait: float = 5.0):
        self._fetcher = fetcher
        self._ua = user_agent
        self._obey = obey
        self._retries = retries
        self._retry_wait = retry_wait
        self._rules: dict[str, HostRules] = {}
        self._pending: dict[str, asyncio.Future] = {}
        self._failures: dict[str, int] = {}  # scheme_host -> unreachable reads so far

    async def rules(self, scheme_host: str) -> HostRules:
        """Rules for ``scheme://host[:port]``: read once, or again when an unreachable one is due a retry."""
        rules = self._rules.get(scheme_host)
        if rules is not None and (rules.retry_at is None or time.monotonic() < rules.retry_at):
            return rules
        if not self._obey:
            rules = self._rules[scheme_host] = HostRules(parser=None)
            return rules
        pending = self._pending.get(scheme_host)
        if pending is None:
            pending = self._pending[scheme_host] = asyncio.get_running_loop().create_future()
            status, text, why = await self._fetcher.get_text(scheme_host + "/robots.txt")
            if status is not None and 200 <= status < 300:
                rules = parse_robots(text, self._ua)
            elif status is not None and 400 <= status < 500:
                rules = HostRules(parser=None)
            else:
                why = why or f"HTTP {status}"
                n = self._failures[scheme_host] = self._failures.get(scheme_host, 0) + 1
                retry_at = None
                if not why.startswith("refused") and n <= self._retries:
                    retry_at = time.monotonic() + self._retry_wait * 2 ** (n - 1)
                rules = HostRules(parser=None, disallow_all=True, unreachable=why, retry_at=retry_at)
            self._rules[scheme_host] = rules
            pending.set_result(rules)
            del self._pending[scheme_host]
            return rules
        return await pending

    def cached(self, scheme_host: str) -> HostRules | None:
        return self._rules.get(scheme_host)


_LOC = re.compile(rb"<loc>\s*([^<\s]+)\s*</loc>", re.I)


async def sitemap_urls(fetcher: Fetcher, sitemap_url: str, limit: int = 50_000, depth: int = 0) -> list[str]:
    """Canonical page URLs listed in a sitemap (or sitemap index, one level deep). Plain XML only."""
    status, text, _ = await fetcher.get_text(sitemap_url, max_bytes=10_000_000)
    if status is None or not 200 <= status < 300:
        return []
    locs = [m.decode("utf-8", "replace") for m in _LOC.findall(text.encode("utf-8"))][:limit]
    out: list[str] = []
    if "<sitemapindex" in text[:2000] and depth == 0:
        for loc in locs[:50]:
            out.extend(await sitemap_urls(fetcher, loc, limit - len(out), depth + 1))
        return out
    for loc in locs:
        url = canonicalize(loc.replace("&amp;", "&"))
        if url:
            out.append(url)
    return out

"""robots.txt per host (RFC 9309, parsed by protego): may we fetch a URL, how long to wait, which sitemaps.

Fetched once per host, concurrently safe (one fetch per host however many workers ask). A 4xx
robots.txt means no rules; an unreachable one (5xx, timeout, refused) means the whole host is
disallowed, as RFC 9309 asks.
"""
from __future__ import annotations

import asyncio
import re
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

    def __init__(self, fetcher: Fetcher, user_agent: str, obey: bool = True):
        self._fetcher = fetcher
        self._ua = user_agent
        self._obey = obey
        self._rules: dict[str, HostRules] = {}
        self._pending: dict[str, asyncio.Future] = {}

    async def rules(self, scheme_host: str) -> HostRules:
        """Rules for ``scheme://host[:port]``."""
        rules = self._rules.get(scheme_host)
        if rules is not None:
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
                rules = HostRules(parser=None, disallow_all=True, unreachable=why or f"HTTP {status}")
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

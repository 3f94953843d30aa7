"""The web crawler: seeds -> frontier -> fetch -> parse -> document store (feeds `index/` and `pipelines/`).

One asyncio event loop runs ``concurrency`` workers. Each takes the next URL from the persisted
`Frontier` (breadth first), checks robots.txt and the per-host politeness slot, fetches it with the
guarded `Fetcher`, parses it, and queues the in-scope outlinks. Finished pages are written in
batches: first the documents into the `DocumentStore`, then their outcomes (and newly found URLs)
into the frontier, so a crash at any instant loses nothing and duplicates nothing (see
`crawler/frontier.py`).

What the store gets, per page (``source = "crawl"``): ``doc_id`` = canonical URL (after redirects;
``<link rel=canonical>`` wins when in scope), ``url`` = the final fetched URL, title, text, status,
fetch time, content hash, and its outlinks (canonical URLs of in-scope pages, distinct, no
self-links, anchor text kept). ``meta`` holds ``depth``, ``content_type``, ``simhash`` (16 hex
digits), ``redirected_from`` (the requested URL when it differs) and ``near_duplicate_of`` (an
earlier page within 3 bits of SimHash). Only text/html, application/xhtml+xml and text/plain
pages with status 2xx are documents; everything else (4xx, 5xx after retries, timeouts, refusals,
robots.txt disallows, other media types, oversize, exact duplicates) is recorded in the frontier
with its reason. An exact duplicate (same text under another URL) becomes an alias of the first
page, and link targets pointing at aliases (redirects, canonical, duplicates) are rewritten to the
document they ended up as, so the link graph only names documents.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from funnel.crawler.dedup import NearDupIndex, simhash
from funnel.crawler.fetcher import Fetcher, FetchResult
from funnel.crawler.frontier import Frontier, State
from funnel.crawler.parser import ParsedPage, decode, parse_html, parse_plain
from funnel.crawler.robots import RobotsCache, sitemap_urls
from funnel.crawler.urls import Scope, canonicalize, host_key
from funnel.core.config import CrawlConfig, PathsConfig
from funnel.core.errors import InputError
from funnel.core.store import Document, DocumentStore, Link, content_hash

log = logging.getLogger(__name__)

HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
TEXT_TYPES = HTML_TYPES | {"text/plain"}


@dataclass
class CrawlStats:
    fetched: int = 0  # responses handled in this run (stored, alias, failed, skipped after a fetch)
    stored: int = 0
    aliases: int = 0
    failed: int = 0
    skipped: int = 0
    deferred: int = 0  # kept queued for the next run: their host's robots.txt could not be read
    timeouts: int = 0  # fetches that ended in a timeout (read, connect, or crawl.fetch_deadline)
    near_duplicates: int = 0
    bytes: int = 0
    seconds: float = 0.0
    frontier_left: int = 0
    errors: Counter = field(default_factory=Counter)

    @property
    def pages_per_s(self) -> float:
        return self.fetched / self.seconds if self.seconds else 0.0

    def summary(self) -> str:
        top = ", ".join(f"{k}: {v}" for k, v in self.errors.most_common(6))
        return (f"crawled {self.fetched} URLs in {self.seconds:.1f}s ({self.pages_per_s:.1f} pages/s): "
                f"{self.stored} stored, {self.aliases} aliases (redirect/canonical/duplicate), "
                f"{self.near_duplicates} near-duplicates marked, {self.failed} failed"
                + (f" ({self.timeouts} timed out)" if self.timeouts else "") + f", {self.skipped} skipped; "
                f"{self.bytes / 1e6:.1f} MB; {self.frontier_left} left in the frontier"
                + (f"\n  kept queued: {self.deferred} URLs whose host's robots.txt could not be read (a temporary "
                   f"failure): run `funnel crawl` again to fetch them" if self.deferred else "")
                + (f"\n  problems: {top}" if top else ""))


def _problem_kind(error: str | None) -> str:
    """A short label to count problems by in the summary ("HTTP 404", "timeout", "robots.txt", ...)."""
    error = error or "unknown"
    for label in ("HTTP", "content type"):
        if error.startswith(label):
            return error[:40]
    for needle, label in (("crawl.allow_private", "refused private/loopback address (crawl with --allow-private "
                                                  "to allow it)"),
                          ("crawl.fetch_deadline", "timeout (crawl.fetch_deadline)"),
                          ("robots.txt unreachable", "robots.txt unreachable (URLs kept queued)"),
                          ("robots.txt", "robots.txt"), ("redirect loop", "redirect loop"),
                          ("redirect to", "redirect refused"), ("redirects", "too many redirects"),
                          ("refused", "refused address"), ("too large", "too large"), ("timeout", "timeout"),
                          ("noindex", "noindex")):
        if needle in error:
            return label
    return error.split(":")[0][:40]


# Settings a crawl keeps for its whole life: saved with the frontier (meta "settings"), restored at resume,
# so `funnel crawl` with no flags continues the crawl that was started (same page cap, same politeness).
RESUMED_SETTINGS = ("max_pages", "max_depth", "concurrency", "per_host_concurrency", "per_host_delay",
                    "allow_private", "sitemaps")


def frontier_path(home: str | Path) -> Path:
    return PathsConfig(str(home)).frontier


def resumed_config(config: CrawlConfig, saved: dict | None, explicit: Collection[str] = ()) -> CrawlConfig:
    """`config` with the settings saved by an earlier run of the frontier, except those in `explicit`
    (set on purpose for this run: they win, and are saved in turn)."""
    if not saved:
        return config
    return replace(config, **{k: v for k, v in saved.items() if k in RESUMED_SETTINGS and k not in explicit})


def crawl(seeds: list[str], store: DocumentStore, config: CrawlConfig, frontier_file: str | Path, *,
          hosts: tuple[str, ...] = (), prefixes: tuple[str, ...] = (), fresh: bool = False,
          progress: bool = True, explicit: Collection[str] = ()) -> CrawlStats:
    """Crawl from `seeds` into `store`; resumes the frontier in `frontier_file` unless `fresh`.

    On resume, the `RESUMED_SETTINGS` saved by the previous run replace those of `config`, except the
    fields named in `explicit` (a CLI flag or ``--set crawl.KEY`` given now); the resolved ones are saved.
    """
    canon = []
    for seed in seeds:
        url = canonicalize(seed)
        if url is None:
            raise InputError(f"seed {seed!r} is not an http(s) URL")
        canon.append(url)
    if not canon and (fresh or not Path(frontier_file).exists()):
        raise InputError("no seed URLs given and no crawl to resume")
    if fresh:
        for suffix in ("", "-wal", "-shm"):
            Path(str(frontier_file) + suffix).unlink(missing_ok=True)
    frontier = Frontier(frontier_file)
    config = resumed_config(config, frontier.get_meta("settings"), explicit)
    saved = frontier.get_meta("scope")
    if not hosts and not prefixes and saved:  # resuming: keep the scope the crawl started with
        hosts = tuple(saved["hosts"]) + (() if saved["prefixes"] else tuple(host_key(u) for u in canon))
        prefixes = tuple(saved["prefixes"])
    if not canon and not hosts and not prefixes:
        frontier.close()
        raise InputError(f"{frontier_file} records no scope: give seed URLs (or --host/--prefix)")
    scope = Scope.for_seeds(canon, hosts=hosts, prefixes=prefixes, max_depth=config.max_depth,
                            max_url_length=config.max_url_length)
    # seeds, settings and scope in one transaction: a crawl killed at any instant resumes from all or none
    frontier.add((s, 0) for s in canon)
    frontier.commit(frontier.take_pending(), [], meta={
        "settings": {k: getattr(config, k) for k in RESUMED_SETTINGS},
        "scope": {"hosts": sorted(scope.hosts), "prefixes": list(scope.prefixes)}})
    return asyncio.run(_Crawler(canon, store, config, frontier, scope, progress).run())


class _HostSlot:
    """Per-host politeness: at most `limit` requests at once, request starts `delay` seconds apart."""

    def __init__(self, limit: int):
        self.sem = asyncio.Semaphore(limit)
        self.next_start = 0.0

    async def wait_turn(self, delay: float) -> None:
        if delay <= 0:
            return
        now = time.monotonic()
        start = max(now, self.next_start)
        self.next_start = start + delay
        if start > now:
            await asyncio.sleep(start - now)


class _Crawler:
    def __init__(self, seeds: list[str], store: DocumentStore, config: CrawlConfig, frontier: Frontier,
                 scope: Scope, progress: bool):
        self.seeds, self.store, self.cfg, self.frontier, self.scope = seeds, store, config, frontier, scope
        self.progress = progress
        self.stats = CrawlStats()
        self.hosts: dict[str, _HostSlot] = {}
        self.hash_owner: dict[str, str] = {}  # content hash -> doc_id (exact duplicates)
        self.alias_of: dict[str, str] = {}  # url -> doc_id, aliases made in this run (breaks canonical cycles)
        self.near = NearDupIndex(config.near_dup_distance)
        self.docs: list[Document] = []  # finished, not yet written
        self.outcomes: list[tuple] = []
        self.in_flight = 0
        self.taken = 0  # fetches counted against max_pages, over all runs of this frontier
        self.wake: asyncio.Condition | None = None
        self.stop = False
        self.last_flush = time.monotonic()
        self.flush_lock: asyncio.Lock | None = None
        self.bar = None

    # -- set-up ----------------------------------------------------------
    def _load_dedup_state(self) -> None:
        for doc_id, chash, meta in self.store.crawl_fingerprints():
            if chash:
                self.hash_owner.setdefault(chash, doc_id)
            fp = meta.get("simhash")
            if fp:
                self.near.add(int(fp, 16), doc_id)

    async def run(self) -> CrawlStats:
        self.wake = asyncio.Condition()
        self.flush_lock = asyncio.Lock()
        self._load_dedup_state()
        self.taken = self.frontier.requested()
        self.frontier.add((s, 0) for s in self.seeds)
        t0 = time.monotonic()
        async with Fetcher(user_agent=self.cfg.user_agent, concurrency=self.cfg.concurrency,
                           connect_timeout=self.cfg.connect_timeout, read_timeout=self.cfg.read_timeout,
                           max_bytes=self.cfg.max_bytes, retries=self.cfg.retries,
                           retry_backoff=self.cfg.retry_backoff, max_redirects=self.cfg.max_redirects,
                           allow_private=self.cfg.allow_private, fetch_deadline=self.cfg.fetch_deadline) as fetcher:
            self.fetcher = fetcher
            self.robots = RobotsCache(fetcher, self.cfg.user_agent, obey=self.cfg.obey_robots,
                                      retries=self.cfg.robots_retries, retry_wait=self.cfg.robots_retry_wait)
            if self.cfg.sitemaps:
                await self._add_sitemaps()
            await asyncio.to_thread(self.frontier.commit, self.frontier.take_pending(), [])
            if self.progress:
                from tqdm import tqdm

                self.bar = tqdm(total=max(0, min(self.cfg.max_pages - self.taken,
                                                 len(self.frontier) or self.cfg.max_pages)),
                                unit="page", desc="crawl", dynamic_ncols=True, mininterval=0.5)
            try:
                await asyncio.gather(*(self._worker() for _ in range(self.cfg.concurrency)))
            finally:
                # Pages already parsed are written (also on Ctrl-C), unless a flush was cut off mid-way:
                # then they stay queued in the frontier and the next run fetches them again.
                if not self.flush_lock.locked():
                    self._flush_now()
                if self.bar is not None:
                    self.bar.close()
        n = self.store.rewrite_link_targets(self.frontier.aliases())
        if n:
            log.info("rewrote %d link targets that pointed at redirects/duplicates", n)
        self.stats.seconds = time.monotonic() - t0
        self.stats.frontier_left = len(self.frontier) + self.stats.deferred
        self.frontier.close()
        return self.stats

    async def _add_sitemaps(self) -> None:
        for seed in self.seeds:
            parts = urlsplit(seed)
            origin = f"{parts.scheme}://{parts.netloc}"
            rules = await self.robots.rules(origin)
            for sm in rules.sitemaps:
                sm = canonicalize(urljoin(origin + "/robots.txt", sm))
                if sm is None:
                    continue
                urls = await sitemap_urls(self.fetcher, sm)
                self.frontier.add((u, 0) for u in urls if self.scope.allows(u, 0))

    # -- the worker loop -------------------------------------------------
    async def _worker(self) -> None:
        while True:
            item = None
            async with self.wake:
                while True:
                    if self.stop or self.taken >= self.cfg.max_pages:
                        return
                    item = self.frontier.pop()
                    if item is not None:
                        break
                    if self.in_flight == 0:
                        self.stop = True
                        self.wake.notify_all()
                        return
                    await self.wake.wait()
                self.in_flight += 1
            try:
                await self._process(*item)
            except Exception as exc:  # a bug on one page must not kill the crawl; record it
                log.exception("crawling %s failed", item[0])
                self._outcome(item[0], item[1], State.FAILED, None, None, f"internal error: {exc!r}"[:300])
            finally:
                async with self.wake:
                    self.in_flight -= 1
                    self.wake.notify_all()
            if len(self.docs) >= self.cfg.flush_every or time.monotonic() - self.last_flush > 2.0:
                await self._flush()

    async def _allowed(self, url: str) -> str | None:
        """Why `url` may not be fetched (robots.txt), or None. Waits while its robots.txt is due a re-read."""
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        rules = await self.robots.rules(origin)
        while rules.retry_at is not None and not self.stop:  # unreachable for now: back off, read it again
            await asyncio.sleep(max(0.0, rules.retry_at - time.monotonic()))
            rules = await self.robots.rules(origin)
        if rules.allowed(url, self.cfg.user_agent):
            return None
        return f"robots.txt unreachable ({rules.unreachable})" if rules.unreachable else "disallowed by robots.txt"

    async def _pace(self, url: str) -> None:
        """Wait for this host's next request slot (per-host delay or robots.txt Crawl-delay, the larger)."""
        parts = urlsplit(url)
        rules = self.robots.cached(f"{parts.scheme}://{parts.netloc}")
        delay = max(self.cfg.per_host_delay, rules.crawl_delay if rules else 0.0)
        if delay > 0:
            host = parts.netloc
            slot = self.hosts.get(host)
            if slot is None:
                slot = self.hosts[host] = _HostSlot(self.cfg.per_host_concurrency)
            await slot.wait_turn(delay)

    async def _redirect_check(self, url: str) -> str | None:
        if not self.scope.allows(url, 0):
            return "out of scope"
        return await self._allowed(url)

    async def _process(self, url: str, depth: int) -> None:
        why = await self._allowed(url)
        if why and why.startswith("robots.txt unreachable"):
            self._defer(url, depth, why)
            return
        if why:
            self._outcome(url, depth, State.SKIPPED, None, None, why, requested=False)
            return
        self.taken += 1
        host = host_key(url)
        slot = self.hosts.get(host)
        if slot is None:
            slot = self.hosts[host] = _HostSlot(self.cfg.per_host_concurrency)
        async with slot.sem:
            result = await self.fetcher.fetch(url, self._redirect_check, self._pace)
        self.stats.fetched += 1
        self.stats.bytes += len(result.body)
        if self.bar is not None:
            self.bar.update(1)
        self._handle(url, depth, result)

    def _handle(self, url: str, depth: int, result: FetchResult) -> None:
        if result.error is not None and result.error.startswith("timeout"):
            self.stats.timeouts += 1
        if result.error is not None or result.status is None or not 200 <= result.status < 300:
            self._outcome(url, depth, State.FAILED, result.status, None, result.error or f"HTTP {result.status}")
            return
        if result.content_type not in TEXT_TYPES:
            self._outcome(url, depth, State.SKIPPED, result.status, None,
                          f"content type {result.content_type or 'missing'}")
            return
        final = result.final_url
        is_html = result.content_type in HTML_TYPES
        text = decode(result.body, result.charset, html=is_html)
        page: ParsedPage = parse_html(text, final) if is_html else parse_plain(text)
        doc_id = final
        if page.canonical and page.canonical != final and self.scope.allows(page.canonical, 0):
            doc_id = page.canonical
        self._follow(page, depth)
        if page.noindex:
            self._outcome(url, depth, State.SKIPPED, result.status, None, "noindex")
            return
        if doc_id != url and self.frontier.seen(doc_id) and doc_id not in self.alias_of:
            # the page this URL resolves to is (or will be) fetched under its own URL: never store it twice
            self.alias_of[url] = doc_id
            self._outcome(url, depth, State.ALIAS, result.status, doc_id, f"same page as {doc_id}")
            return
        chash = content_hash(page.text)
        owner = self.hash_owner.get(chash) if page.text else None
        if owner is not None and owner != doc_id:
            self.alias_of[url] = owner
            self._outcome(url, depth, State.ALIAS, result.status, owner, f"exact duplicate of {owner}")
            if doc_id != url:
                self._outcome(doc_id, depth, State.ALIAS, result.status, owner, f"exact duplicate of {owner}",
                              requested=False)
            return
        if page.text:
            self.hash_owner[chash] = doc_id
        meta = {"depth": depth, "content_type": result.content_type}
        if url != doc_id:
            meta["redirected_from"] = url
        if page.text:
            fp = simhash(page.text)
            meta["simhash"] = f"{fp:016x}"
            other = self.near.find(fp)
            if other is not None and other != doc_id:
                meta["near_duplicate_of"] = other
                self.stats.near_duplicates += 1
            self.near.add(fp, doc_id)
        outlinks = [Link(u, a) for u, a in page.links if u != doc_id and self.scope.allows(u, 0)]
        self.docs.append(Document(doc_id=doc_id, url=final, title=page.title, text=page.text, outlinks=outlinks,
                                  source="crawl", fetched_at=time.time(), content_hash=chash,
                                  status=result.status, meta=meta))
        self.stats.stored += 1
        if doc_id != url:
            self._outcome(url, depth, State.ALIAS, result.status, doc_id, f"resolves to {doc_id}")
        self._outcome(doc_id, depth, State.STORED, result.status, doc_id, None, requested=doc_id == url)

    def _follow(self, page: ParsedPage, depth: int) -> None:
        if page.nofollow or depth + 1 > self.scope.max_depth:
            return
        new = self.frontier.add((u, depth + 1) for u, _ in page.links if self.scope.allows(u, depth + 1))
        if new and self.bar is not None:
            self.bar.total = max(self.bar.n, min(self.cfg.max_pages - self.taken + self.bar.n,
                                                 self.bar.n + len(self.frontier) + self.in_flight))
            self.bar.set_postfix(frontier=len(self.frontier), errors=self.stats.failed, refresh=False)

    def _outcome(self, url: str, depth: int, state: int, status: int | None, doc_id: str | None,
                 error: str | None, requested: bool = True) -> None:
        self.outcomes.append((url, depth, state, status, doc_id, error, time.time(), int(requested)))
        self.frontier.mark_seen(url)
        if not requested and state != State.SKIPPED:
            return  # a target recorded in passing: its URL's own outcome was counted
        if state == State.FAILED:
            self.stats.failed += 1
            self.stats.errors[_problem_kind(error)] += 1
        elif state == State.SKIPPED:
            self.stats.skipped += 1
            self.stats.errors[_problem_kind(error)] += 1
        elif state == State.ALIAS:
            self.stats.aliases += 1

    def _defer(self, url: str, depth: int, why: str) -> None:
        """Keep `url` queued on disk (with the reason) but out of this run: its host's robots.txt could not
        be read, which is temporary (site down, or a loopback site crawled without allow_private)."""
        self.outcomes.append((url, depth, State.QUEUED, None, None, why + "; kept queued", time.time(), 0))
        self.frontier.mark_seen(url)
        self.stats.deferred += 1
        self.stats.errors[_problem_kind(why)] += 1

    # -- persistence -----------------------------------------------------
    def _take_batch(self):
        docs, outcomes, self.docs, self.outcomes = self.docs, self.outcomes, [], []
        self.last_flush = time.monotonic()
        return docs, self.frontier.take_pending(), outcomes

    @staticmethod
    def _write(store: DocumentStore, frontier: Frontier, docs, new_urls, outcomes) -> None:
        if docs:
            store.put_docs(docs)  # documents first, then the frontier: see the module docstring
        frontier.commit(new_urls, outcomes)

    async def _flush(self) -> None:
        async with self.flush_lock:
            if not self.docs and not self.outcomes:
                return
            batch = self._take_batch()
            await asyncio.to_thread(self._write, self.store, self.frontier, *batch)

    def _flush_now(self) -> None:
        self._write(self.store, self.frontier, *self._take_batch())

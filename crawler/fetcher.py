"""The fetcher: one HTTP GET with the web's defences (the crawler's only socket code; feeds `crawl.py`).

- Only http and https. Targets that resolve to private, loopback, link-local, reserved or
  multicast addresses (which includes cloud metadata at 169.254.169.254) are refused unless
  ``allow_private``. The check is in the resolver the connection itself uses, so a DNS answer cannot
  change between check and connect; IP-literal hosts are checked before the request.
- Connect and read timeouts; retries with exponential backoff on 5xx, 429, timeouts and
  connection errors; 4xx is final.
- A whole-response deadline per request (``fetch_deadline``, connect to last byte): a server that
  drips a byte just often enough to dodge the read timeout is cut off, and not retried (a drip
  server would only hold the worker again).
- Redirects followed by hand up to ``max_redirects``: each hop is checked again (scheme, address,
  and the caller's `check`, i.e. scope and robots.txt); a loop is an error; the final URL is recorded.
- A body cap (``max_bytes``) counted on the *decompressed* stream, so a gzip bomb stops at the cap
  instead of filling memory; a larger Content-Length is refused before reading.
- Only the body's bytes come back: nothing fetched is ever executed.
"""
from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from funnel.crawler.urls import canonicalize

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


class RefusedError(Exception):
    """A URL the fetcher will not touch (scheme, private address, out of scope, robots.txt)."""


def address_refusal(ip: str) -> str | None:
    """Why an address is off limits for a crawler on the public web, or None."""
    try:
        addr = ipaddress.ip_address(ip.strip("[]").split("%")[0])
    except ValueError:
        return None
    if getattr(addr, "ipv4_mapped", None):
        addr = addr.ipv4_mapped
    for flag in ("is_loopback", "is_private", "is_link_local", "is_reserved", "is_multicast", "is_unspecified"):
        if getattr(addr, flag):
            return f"{addr} is a {flag[3:].replace('_', '-')} address"
    return None


class GuardedResolver(AbstractResolver):
    """DNS resolution that refuses private/loopback/link-local/metadata answers (SSRF guard)."""

    def __init__(self, allow_private: bool):
        self._inner = ThreadedResolver()
        self._allow_private = allow_private

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        if not self._allow_private:
            for r in results:
                why = address_refusal(r["host"])
                if why:
                    raise RefusedError(f"{host} resolves to {why} (set crawl.allow_private to allow)")
        return results

    async def close(self) -> None:
        await self._inner.close()


@dataclass
class FetchResult:
    url: str  # as requested (canonical)
    final_url: str  # after redirects (canonical)
    status: int | None = None  # None when no response came back
    content_type: str = ""  # media type, lower case, no parameters
    charset: str | None = None  # from the Content-Type header
    body: bytes = b""
    error: str | None = None  # why the fetch failed (None on any HTTP response we keep)
    redirects: list[str] = field(default_factory=list)
    attempts: int = 0


class TooLarge(Exception):
    pass


class DeadlineExceeded(Exception):
    """One request took longer than ``fetch_deadline`` from connect to last byte."""


class Fetcher:
    """An aiohttp session with the crawler's limits. Use as ``async with Fetcher(...) as f``."""

    def __init__(self, *, user_agent: str, concurrency: int, connect_timeout: float, read_timeout: float,
                 max_bytes: int, retries: int, retry_backoff: float, max_redirects: int, allow_private: bool,
                 fetch_deadline: float = 60.0):
        self.user_agent = user_agent
        self.concurrency = concurrency
        self.timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout, connect=connect_timeout,
                                             sock_read=read_timeout)
        self.read_timeout = read_timeout
        self.max_bytes = max_bytes
        self.retries = retries
        self.retry_backoff = retry_backoff
        self.max_redirects = max_redirects
        self.allow_private = allow_private
        self.fetch_deadline = fetch_deadline
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> "Fetcher":
        connector = aiohttp.TCPConnector(limit=self.concurrency, limit_per_host=0, ttl_dns_cache=300,
                                         resolver=GuardedResolver(self.allow_private))
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=self.timeout, auto_decompress=True,
            headers={"User-Agent": self.user_agent,
                     "Accept": "text/html,application/xhtml+xml,text/plain;q=0.9,*/*;q=0.5",
                     "Accept-Encoding": "gzip, deflate"})
        return self

    async def __aexit__(self, *exc) -> None:
        await self._session.close()

    def _check_address(self, url: str) -> None:
        if urlsplit(url).scheme not in ("http", "https"):
            raise RefusedError(f"scheme of {url} is not http or https")
        if not self.allow_private:
            why = address_refusal(urlsplit(url).hostname or "")
            if why:
                raise RefusedError(f"{why} (set crawl.allow_private to allow)")

    async def fetch(self, url: str, check: Callable[[str], Awaitable[str | None]] | None = None,
                    pace: Callable[[str], Awaitable[None]] | None = None) -> FetchResult:
        """GET `url`, following redirects (each hop passed to `check`, which returns a refusal or None).

        `pace(url)` is awaited before every request, retries and redirect hops included (politeness).
        """
        result = FetchResult(url=url, final_url=url)
        current = url
        chain = {url}
        try:
            for _ in range(self.max_redirects + 1):
                self._check_address(current)
                status, headers, body = await self._get_with_retries(current, result, pace=pace)
                result.status = status
                if status in REDIRECT_STATUSES and headers.get("Location"):
                    target = canonicalize(urljoin(current, headers["Location"]))
                    if target is None:
                        raise RefusedError(f"redirect to a non-http(s) URL {headers['Location']!r}")
                    if target in chain:
                        result.error = f"redirect loop at {target}"
                        return result
                    if check is not None:
                        why = await check(target)
                        if why:
                            result.final_url = target
                            result.error = f"redirect to {target} refused: {why}"
                            return result
                    chain.add(target)
                    result.redirects.append(target)
                    current = target
                    continue
                result.final_url = current
                ctype = headers.get("Content-Type", "")
                result.content_type = ctype.split(";", 1)[0].strip().lower()
                for param in ctype.split(";")[1:]:
                    key, _, value = param.partition("=")
                    if key.strip().lower() == "charset":
                        result.charset = value.strip().strip('"\'') or None
                result.body = body
                if status in RETRY_STATUSES or status >= 400:
                    result.error = f"HTTP {status}"
                return result
            result.error = f"more than {self.max_redirects} redirects"
            return result
        except RefusedError as exc:
            result.error = f"refused: {exc}"
        except (TooLarge, DeadlineExceeded) as exc:
            result.error = str(exc)
        except asyncio.TimeoutError:
            result.error = f"timeout after {result.attempts} attempts"
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            cause = exc
            while cause.__cause__ is not None and not isinstance(cause, RefusedError):
                cause = cause.__cause__
            if isinstance(cause, RefusedError):
                result.error = f"refused: {cause}"
            else:
                result.error = f"{type(exc).__name__}: {exc}"[:300]
        return result

    async def _get_with_retries(self, url: str, result: FetchResult, max_bytes: int | None = None, pace=None):
        attempt = 0
        while True:
            attempt += 1
            result.attempts += 1
            if pace is not None:
                await pace(url)
            try:
                status, headers, body = await self._get(url, max_bytes or self.max_bytes)
                if status not in RETRY_STATUSES or attempt > self.retries:
                    return status, headers, body
            except (asyncio.TimeoutError, aiohttp.ServerDisconnectedError, aiohttp.ClientConnectionError) as exc:
                cause = exc.__cause__ if exc.__cause__ is not None else exc
                if isinstance(cause, RefusedError) or isinstance(exc.__context__, RefusedError):
                    raise
                if attempt > self.retries:
                    raise
            await asyncio.sleep(self.retry_backoff * 2 ** (attempt - 1))

    async def _get(self, url: str, max_bytes: int):
        deadline = asyncio.timeout(self.fetch_deadline)
        try:
            async with deadline:
                return await self._get_body(url, max_bytes)
        except TimeoutError:
            if not deadline.expired():  # a read or connect timeout inside: retryable, as before
                raise
            raise DeadlineExceeded(f"timeout: no whole response within crawl.fetch_deadline = "
                                   f"{self.fetch_deadline:g} s (a server dripping its body)") from None

    async def _get_body(self, url: str, max_bytes: int):
        async with self._session.get(url, allow_redirects=False) as resp:
            headers = resp.headers
            if resp.status in REDIRECT_STATUSES or resp.status >= 400:
                return resp.status, headers, b""  # bodies of redirects and errors are not needed
            length = resp.content_length
            if length is not None and length > max_bytes:
                raise TooLarge(f"too large: Content-Length {length} > max_bytes {max_bytes}")
            chunks, size = [], 0
            async for chunk in resp.content.iter_chunked(1 << 16):  # decompressed bytes
                size += len(chunk)
                if size > max_bytes:
                    raise TooLarge(f"too large: body exceeds max_bytes {max_bytes} after decompression")
                chunks.append(chunk)
            return resp.status, headers, b"".join(chunks)

    async def get_text(self, url: str, max_bytes: int = 512_000) -> tuple[int | None, str, str | None]:
        """A small auxiliary resource (robots.txt, sitemap): (status, text, None), or (None, '', why not)."""
        try:
            self._check_address(url)
            result = FetchResult(url=url, final_url=url)
            current = url
            for _ in range(self.max_redirects + 1):
                status, headers, body = await self._get_with_retries(current, result, min(max_bytes, self.max_bytes))
                if status in REDIRECT_STATUSES and headers.get("Location"):
                    current = canonicalize(urljoin(current, headers["Location"])) or ""
                    self._check_address(current)
                    continue
                return status, body.decode("utf-8", "replace"), None
            return None, "", "too many redirects"
        except RefusedError as exc:
            return None, "", f"refused: {exc}"
        except (TooLarge, DeadlineExceeded, asyncio.TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
            cause = exc.__cause__ or exc.__context__
            if isinstance(cause, RefusedError):
                return None, "", f"refused: {cause}"
            return None, "", f"{type(exc).__name__}: {exc}"[:200]

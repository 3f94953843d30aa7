"""URL canonicalisation and crawl scope: every URL the crawler stores or follows goes through here first.

One canonical form per page, so the frontier sees each page once and the store's ``doc_id`` (the
canonical URL) is stable: scheme and host lower-cased, IDNA host, default port dropped, userinfo and
fragment dropped, dot segments resolved, percent-encoding normalised and query arguments sorted
(`w3lib.url.canonicalize_url`), common tracking parameters (``utm_*``, ``gclid``, ``fbclid``, ...)
removed, and an empty path written as ``/``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

from w3lib.url import canonicalize_url

SCHEMES = ("http", "https")
_DEFAULT_PORTS = {"http": 80, "https": 443}
TRACKING_PARAMS = frozenset({
    "gclid", "dclid", "gbraid", "wbraid", "fbclid", "msclkid", "yclid", "mc_cid", "mc_eid", "igshid",
    "_ga", "_gl", "_hsenc", "_hsmi", "ref_src", "mkt_tok", "oly_anon_id", "oly_enc_id", "vero_id",
    "si", "spm", "scid",
})
TRACKING_PREFIXES = ("utm_",)

# Canonicalising is the crawler's hottest pure function (every link of every page); javadoc-like sites
# repeat the same navigation links on every page, so a bounded memo pays for itself.
_CACHE: dict[str, str | None] = {}
_CACHE_MAX = 200_000


def _is_tracking(name: str) -> bool:
    name = name.lower()
    return name in TRACKING_PARAMS or name.startswith(TRACKING_PREFIXES)


def canonicalize(url: str) -> str | None:
    """The canonical form of an absolute URL, or None when it is not a crawlable http(s) URL."""
    hit = _CACHE.get(url, False)
    if hit is not False:
        return hit
    out = _canonicalize(url)
    if len(_CACHE) >= _CACHE_MAX:
        _CACHE.clear()
    _CACHE[url] = out
    return out


def _canonicalize(url: str) -> str | None:
    try:
        parts = urlsplit(url.strip())
        scheme = parts.scheme.lower()
        if scheme not in SCHEMES or not parts.hostname:
            return None
        host = parts.hostname.rstrip(".")  # lower-cased by urlsplit
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            return None
        port = parts.port  # ValueError on a bad port
        if ":" in host:  # IPv6 literal
            host = f"[{host}]"
        netloc = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            kept = [(k, v) for k, v in pairs if not _is_tracking(k)]
            if len(kept) != len(pairs):
                query = urlencode(kept)
        rebuilt = urlunsplit((scheme, netloc, parts.path or "/", query, ""))
        return canonicalize_url(rebuilt, keep_fragments=False)
    except ValueError:
        return None


_SKIP_PREFIXES = ("javascript:", "mailto:", "data:", "tel:")
_JOIN_CACHE: dict[tuple[str, str], str | None] = {}
# Already canonical: lower-case ASCII host, optional port, a path of unreserved characters, no query.
_SIMPLE = re.compile(r"https?://[a-z0-9-]+(?:\.[a-z0-9-]+)*(?::(\d+))?(?:/[A-Za-z0-9._~!$&'()*+,;=:@/-]*)?")


def absolutize(href: str, base: str) -> str | None:
    """`href` (as written in a page at canonical URL `base`) made absolute and canonical; None if not a page link.

    Memoised on (base folder, href): a relative link means the same from every page of one folder,
    and sites repeat their navigation links on every page.
    """
    href = href.strip()
    if not href or href[0] == "#" or href[:11].lower().startswith(_SKIP_PREFIXES):
        return None
    href = href.split("#", 1)[0]
    base_path = base.split("?", 1)[0]
    key = (base if href[0] == "?" else base_path[:base_path.rfind("/") + 1], href)
    hit = _JOIN_CACHE.get(key, False)
    if hit is not False:
        return hit
    try:
        joined = urljoin(base, href)
    except ValueError:
        joined = None
    out = None
    if joined is not None:
        m = _SIMPLE.fullmatch(joined)
        if m and "/./" not in joined and "/../" not in joined and not _default_port(joined, m.group(1)):
            out = joined if joined.count("/") > 2 else joined + "/"
        else:
            out = canonicalize(joined)
    if len(_JOIN_CACHE) >= _CACHE_MAX:
        _JOIN_CACHE.clear()
    _JOIN_CACHE[key] = out
    return out


def _default_port(url: str, port: str | None) -> bool:
    return port is not None and int(port) == _DEFAULT_PORTS[url[:url.index(":")]]


def host_key(url: str) -> str:
    """``host[:port]`` of a canonical URL: the unit of politeness (robots.txt, per-host delay)."""
    return urlsplit(url).netloc


@dataclass(frozen=True)
class Scope:
    """Which URLs a crawl may follow: allowed hosts, allowed URL prefixes, a depth limit and a length limit.

    With neither hosts nor prefixes given, the seeds' hosts are the scope (`Scope.for_seeds`).
    """

    hosts: frozenset[str] = frozenset()
    prefixes: tuple[str, ...] = ()
    max_depth: int = 50
    max_url_length: int = 2048

    @classmethod
    def for_seeds(cls, seeds: list[str], hosts=(), prefixes=(), max_depth: int = 50,
                  max_url_length: int = 2048) -> "Scope":
        canon_prefixes = tuple(p for p in (canonicalize(p) for p in prefixes) if p)
        hosts = frozenset(h.lower() for h in hosts)
        if not hosts and not canon_prefixes:
            hosts = frozenset(host_key(s) for s in seeds)
        return cls(hosts, canon_prefixes, max_depth, max_url_length)

    def allows(self, url: str, depth: int = 0) -> bool:
        if depth > self.max_depth or len(url) > self.max_url_length:
            return False
        if self.hosts and host_key(url) not in self.hosts:
            return False
        if self.prefixes and not url.startswith(self.prefixes):
            return False
        return True

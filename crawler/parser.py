"""Page parsing: bytes -> title, main text and outlinks with anchor text (selectolax's Lexbor parser).

Pure functions, no I/O. Charset: UTF-8 when the bytes are valid UTF-8, else the declared charset (header, then
``<meta charset>``), else charset_normalizer's guess for non-Latin scripts, else windows-1252; so a page that lies
about its charset still reads right. ``<script>``, ``<style>`` and friends are removed before the
text is taken (Lexbor's ``text()`` would include them). ``<base href>`` sets the base of relative
links; ``rel=nofollow`` links and ``<meta name=robots content=nofollow>`` pages give no outlinks to
follow; ``<link rel=canonical>`` is reported for the crawler to decide. The text is the page's
``<main>`` (or ``role=main``) element when there is one, else the body.
"""
from __future__ import annotations

import codecs
import re
from dataclasses import dataclass, field

from selectolax.lexbor import LexborHTMLParser

from funnel.crawler.urls import absolutize

_DROP = "script, style, noscript, template, svg, iframe, object, embed"
_NON_LATIN = frozenset({
    "cp1251", "koi8_r", "koi8_u", "iso8859_5", "mac_cyrillic", "cp866", "cp1253", "iso8859_7", "cp1255",
    "iso8859_8", "cp1256", "iso8859_6", "shift_jis", "cp932", "euc_jp", "iso2022_jp", "gb2312", "gbk", "gb18030",
    "big5", "big5hkscs", "euc_kr", "cp949", "johab", "tis_620", "cp874"})
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.I)


@dataclass
class ParsedPage:
    title: str = ""
    text: str = ""
    links: list[tuple[str, str]] = field(default_factory=list)  # (canonical URL, anchor), nofollow removed
    canonical: str | None = None  # <link rel=canonical>, canonicalised
    noindex: bool = False
    nofollow: bool = False


def _codec(name: str | None) -> str | None:
    if not name:
        return None
    try:
        return codecs.lookup(name.strip()).name
    except LookupError:
        return None


def decode(body: bytes, declared: str | None = None, html: bool = True) -> str:
    """Text of `body`: UTF-8 if it is valid UTF-8, else the declared charset, else a detected one."""
    # Strictly valid UTF-8 is almost never anything else, so it goes first: that rescues pages whose
    # header or <meta> names the wrong charset (latin-1 would "decode" any bytes into mojibake).
    candidates = ["utf-8-sig" if body.startswith(codecs.BOM_UTF8) else "utf-8", _codec(declared)]
    if html:
        m = _META_CHARSET.search(body[:4096])
        candidates.append(_codec(m.group(1).decode("ascii", "ignore")) if m else None)
    for name in candidates:
        if name is None:
            continue
        try:
            return body.decode(name)
        except (UnicodeDecodeError, LookupError):
            continue
    # Undeclared (or wrongly declared) legacy bytes. Detectors cannot tell the Latin code pages apart on
    # short texts (French cp1252 comes back as "cp1257, Hungarian"), so like browsers (WHATWG) we default
    # to windows-1252 and trust the detector only for scripts it tells apart well: CJK, Cyrillic, Greek, ...
    from charset_normalizer import from_bytes

    best = from_bytes(body[:200_000]).best()
    if best is not None and best.encoding in _NON_LATIN:
        return body.decode(best.encoding, "replace")
    return body.decode("cp1252", "replace")


def clean_text(text: str) -> str:
    return " ".join(text.split())


def parse_html(html: str, url: str) -> ParsedPage:
    """Title, visible text, outlinks (absolute, canonical, with anchor text) of one HTML page at `url`."""
    tree = LexborHTMLParser(html)
    page = ParsedPage()
    head = tree.head
    base = url
    if head is not None:
        node = head.css_first("title")
        if node is not None:
            page.title = clean_text(node.text())
        for meta in head.css("meta[name]"):
            if (meta.attributes.get("name") or "").lower() == "robots":
                content = (meta.attributes.get("content") or "").lower()
                page.noindex = "noindex" in content or "none" in content
                page.nofollow = "nofollow" in content or "none" in content
        node = head.css_first("base[href]")
        if node is not None:
            base = absolutize(node.attributes.get("href") or "", url) or url
        for link in head.css("link[rel][href]"):
            if "canonical" in (link.attributes.get("rel") or "").lower().split():
                page.canonical = absolutize(link.attributes.get("href") or "", base)
                break
    if not page.title:
        node = tree.css_first("title")
        if node is not None:
            page.title = clean_text(node.text())
    if not page.nofollow:
        seen: set[str] = set()
        for a in tree.css("a[href], area[href]"):
            attrs = a.attrs
            rel = attrs.get("rel")
            if rel and "nofollow" in rel.lower():
                continue
            target = absolutize(attrs.get("href") or "", base)
            if target is None or target in seen:
                continue
            seen.add(target)
            page.links.append((target, clean_text(a.text(deep=True)) if a.tag == "a" else (attrs.get("alt") or "")))
    tree.strip_tags(_DROP.split(", "))
    # Main text: the page's declared main content (<main>, role=main: javadoc, Sphinx) when it has one,
    # so navigation repeated on every page does not dilute the index; else the whole body.
    node = tree.css_first("main, [role=main]") or tree.body or tree.root
    page.text = clean_text(node.text(separator=" "))
    if not page.text and node is not tree.body and tree.body is not None:
        page.text = clean_text(tree.body.text(separator=" "))
    return page


def parse_plain(text: str) -> ParsedPage:
    return ParsedPage(text=clean_text(text))

"""A static HTML site read from disk -> store documents with their outlinks, as a crawl would record them.

Used where no crawl is wanted (benchmarks of the link analysis, tests): every ``*.html`` file under
`root` becomes one document whose id is its URL under `base_url`; each ``<a href>`` is resolved
against the page's URL (fragments and query strings dropped), so the link graph has the same shape
a crawler of the served site would store. Links leaving `base_url` are kept as outlinks (they count
as nothing in PageRank, which only ranks documents in the store).
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urldefrag, urljoin, urlsplit, urlunsplit

from tqdm.auto import tqdm

from funnel.core.errors import FunnelError
from funnel.core.store import Document, DocumentStore, Link


def _normalise(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return None
    path = parts.path or "/"
    if path.endswith("/"):
        path += "index.html"
    return urlunsplit((parts.scheme, parts.netloc.lower(), path, "", ""))


def parse_page(html: bytes | str, url: str) -> tuple[str, str, list[Link]]:
    """(title, main text, outlinks) of one page; `url` resolves relative links."""
    from selectolax.lexbor import LexborHTMLParser

    tree = LexborHTMLParser(html if isinstance(html, str) else html.decode("utf-8", "replace"))
    title_node = tree.css_first("title")
    title = title_node.text(strip=True) if title_node else ""
    links: list[Link] = []
    base = tree.css_first("base[href]")
    base_url = urljoin(url, base.attributes.get("href") or "") if base else url
    for a in tree.css("a[href]"):
        href = (a.attributes.get("href") or "").strip()
        if not href or href.startswith(("#", "javascript:", "mailto:")):
            continue
        target = _normalise(urldefrag(urljoin(base_url, href))[0])
        if target:
            links.append(Link(target, a.text(strip=True)[:200]))
    for node in tree.css("script, style, noscript"):
        node.decompose()
    body = tree.body
    text = body.text(separator=" ", strip=True) if body else ""
    return title, text, links


def site_documents(root: str | Path, base_url: str = "http://127.0.0.1:8000/", *, source: str = "site",
                   progress: bool = True) -> Iterator[Document]:
    """One `Document` per HTML file under `root`, in path order."""
    root = Path(root)
    if not root.is_dir():
        raise FunnelError(f"site folder {root} does not exist")
    base_url = base_url.rstrip("/") + "/"
    files = sorted(root.rglob("*.html"))
    for path in tqdm(files, desc="parsing", unit="page", disable=not progress, mininterval=0.5):
        url = base_url + path.relative_to(root).as_posix()
        title, text, links = parse_page(path.read_bytes(), url)
        yield Document(doc_id=url, url=url, title=title, text=text, outlinks=links, source=source, status=200)


def load_site(store: DocumentStore, root: str | Path, base_url: str = "http://127.0.0.1:8000/", *,
              batch: int = 500, progress: bool = True) -> int:
    """Put every page of the site into the store (batches of one transaction each); returns the count."""
    n, buf = 0, []
    for doc in site_documents(root, base_url, progress=progress):
        buf.append(doc)
        if len(buf) >= batch:
            n += store.put_docs(buf)
            buf = []
    return n + (store.put_docs(buf) if buf else 0)

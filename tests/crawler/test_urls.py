"""URL canonicalisation and scope."""
from __future__ import annotations

import pytest

from funnel.crawler.urls import Scope, absolutize, canonicalize


@pytest.mark.parametrize("raw, canon", [
    ("HTTP://Example.COM:80/a/../b/?b=2&a=1#frag", "http://example.com/b/?a=1&b=2"),
    ("https://example.com:443", "https://example.com/"),
    ("https://example.com:8443/x", "https://example.com:8443/x"),
    ("http://ex.com/p?utm_source=x&utm_medium=y&q=1&fbclid=abc&gclid=z", "http://ex.com/p?q=1"),
    ("http://ex.com/%7efoo", "http://ex.com/~foo"),
    ("http://ex.com/a b?x=é", "http://ex.com/a%20b?x=%C3%A9"),
    ("http://user:pw@ex.com/", "http://ex.com/"),
    ("http://bücher.de/", "http://xn--bcher-kva.de/"),
    ("ftp://ex.com/file", None),
    ("javascript:alert(1)", None),
    ("http://ex.com:99999/", None),
    ("http:///nohost", None),
])
def test_canonicalize(raw, canon):
    assert canonicalize(raw) == canon


def test_absolutize():
    base = "http://ex.com/dir/page.html"
    assert absolutize("other.html#x", base) == "http://ex.com/dir/other.html"
    assert absolutize("../up.html", base) == "http://ex.com/up.html"
    assert absolutize("//cdn.ex.com/x", base) == "http://cdn.ex.com/x"
    for skipped in ("#top", "mailto:a@b.c", "javascript:void(0)", "  ", "data:text/html,hi", "tel:123"):
        assert absolutize(skipped, base) is None


def test_scope():
    scope = Scope.for_seeds(["http://ex.com:8080/docs/index.html"], max_depth=2, max_url_length=60)
    assert scope.allows("http://ex.com:8080/anything", 2)
    assert not scope.allows("http://ex.com:8080/anything", 3)  # too deep
    assert not scope.allows("http://ex.com/anything", 0)  # another port is another host
    assert not scope.allows("http://ex.com:8080/" + "x" * 60, 0)  # too long
    prefixed = Scope.for_seeds(["http://ex.com/docs/index.html"], prefixes=["http://EX.com/docs/"])
    assert prefixed.allows("http://ex.com/docs/a.html") and not prefixed.allows("http://ex.com/blog/a.html")


def test_absolutize_fast_path_agrees_with_full_canonicalisation():
    from urllib.parse import urljoin

    bases = ["http://ex.com/dir/page.html", "http://ex.com:80/dir/", "https://ex.com:8443/a/b/c.html?x=1",
             "http://127.0.0.1:8080/api/java.base/java/lang/String.html"]
    hrefs = ["other.html", "../up.html", "./same.html", "/root.html", "Sub/Dir/X.html#frag", "?q=2&a=1",
             "a%7eb.html", "a b.html", "über.html", "//EX.com:80/x", "http://ex.com:443/", "https://ex.com:443/p",
             "../../../../too/far.html", "x.html?utm_source=y", "module-summary.html#nav", "A.B$C.html", "."]
    for base in bases:
        for href in hrefs:
            assert absolutize(href, base) == canonicalize(urljoin(base, href.split("#")[0])), (base, href)
            assert absolutize(href, base) == absolutize(href, base)  # memoised answer is the same

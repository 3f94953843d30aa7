"""Parsing and decoding of fetched bytes (pure functions; the crawl tests cover them over HTTP too)."""
from __future__ import annotations

from funnel.crawler.parser import decode, parse_html, parse_plain


def test_main_content_links_and_head_directives():
    html = """<html><head><title> A  page </title><base href="/docs/"><link rel="canonical" href="/docs/a.html">
    <meta name="robots" content="NOINDEX"></head><body><nav>Menu Home About</nav>
    <main><h1>Heading</h1><p>Body <b>text</b>.</p><script>alert(1)</script><style>p{}</style>
    <a href="b.html#s">to B</a><a href="b.html">B again</a><a href="/x" rel="nofollow ugc">no</a>
    <a href="mailto:a@b.c">mail</a></main><footer>Footer</footer></body></html>"""
    page = parse_html(html, "http://ex.com/dir/a.html")
    assert page.title == "A page"
    assert page.text == "Heading Body text . to B B again no mail"
    assert page.links == [("http://ex.com/docs/b.html", "to B")]
    assert page.canonical == "http://ex.com/docs/a.html" and page.noindex and not page.nofollow


def test_body_text_without_main_and_nofollow_page():
    page = parse_html('<head><meta name="robots" content="nofollow"></head><body><p>x</p><a href="/y">y</a></body>',
                      "http://ex.com/")
    assert page.text == "x y" and page.links == [] and page.nofollow


def test_decode_prefers_valid_utf8_then_declared_then_detected():
    assert decode("naïve".encode("utf-8"), "iso-8859-1") == "naïve"  # header lies, bytes are UTF-8
    assert decode('<meta charset="koi8-r"><p>Привет</p>'.encode("koi8-r"), None) == \
        '<meta charset="koi8-r"><p>Привет</p>'
    assert decode("Grüße".encode("latin-1"), "latin-1") == "Grüße"
    text = "Le café est très bon, déjà vu à la crème brûlée, où êtes-vous ? " * 5
    assert decode(text.encode("cp1252"), "utf-8") == text  # declared UTF-8, bytes cp1252: detected
    assert decode(b"\xef\xbb\xbfhello", None) == "hello"  # BOM


def test_plain_text():
    assert parse_plain("  a\n\n b\tc ").text == "a b c"


def test_decode_detects_undeclared_non_latin_scripts():
    text = "Москва — столица России, крупнейший по численности населения город страны. " * 3
    assert decode(text.encode("cp1251"), None, html=False) == text
    jp = "日本語の文章です。東京は日本の首都であり、多くの人々が住んでいます。" * 3
    assert decode(jp.encode("shift_jis"), None, html=False) == jp

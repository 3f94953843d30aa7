"""`funnel crawl` end to end: crawl a loopback site, then `funnel index` and `funnel search` find its pages."""
from __future__ import annotations

import json
from collections import Counter

from funnel.cli.main import main
from tests.crawler.test_crash import N_PAGES, grid_site
from tests.crawler.hostile_site import serve_app


def test_crawl_index_search(tmp_path, capsys):
    home = str(tmp_path / "home")
    requests: Counter = Counter()
    with serve_app(grid_site(requests)) as base:
        assert main(["-q", "--home", home, "crawl", base + "/p/0.html", "--allow-private", "--concurrency", "4",
                     "--max-pages", "40"]) == 0
        out = capsys.readouterr().out
        assert "crawled 40 URLs" in out and "40 stored" in out
        # no seeds: resume the frontier; --max-pages counts over every run of it
        assert main(["-q", "--home", home, "crawl", "--allow-private", "--max-pages", "60"]) == 0
        assert "crawled 20 URLs" in capsys.readouterr().out
        assert main(["-q", "--home", home, "crawl", "--fresh", base + "/p/0.html", "--allow-private",
                     "--max-pages", str(N_PAGES)]) == 0
        assert f"{N_PAGES} stored" in capsys.readouterr().out
    assert main(["-q", "--home", home, "index"]) == 0
    capsys.readouterr()
    assert main(["-q", "--home", home, "search", "page number 77", "--mode", "bm25", "--json", "-k", "3"]) == 0
    hits = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert hits[0]["doc_id"] == f"{base}/p/77.html" and hits[0]["title"] == "Page 77"


def test_crawl_errors_are_user_errors(tmp_path, capsys):
    home = str(tmp_path / "home")
    assert main(["-q", "--home", home, "crawl", "ftp://example.com/"]) == 2
    assert "error: seed 'ftp://example.com/' is not an http(s) URL" in capsys.readouterr().err
    assert main(["-q", "--home", home, "crawl"]) == 2
    assert "no seed URLs given" in capsys.readouterr().err


def test_refused_loopback_site_is_explained_and_exits_non_zero(tmp_path, capsys):
    home = str(tmp_path / "home")
    with serve_app(grid_site(Counter())) as base:
        assert main(["-q", "--home", home, "crawl", base + "/p/0.html", "--max-pages", "5"]) == 2
    captured = capsys.readouterr()
    assert "refused private/loopback address (crawl with --allow-private to allow it)" in captured.out
    assert captured.err.startswith("error: nothing could be crawled: refused private/loopback address"), captured.err

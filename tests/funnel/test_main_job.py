"""`funnel demo` end to end on a small generated site served on loopback: crawl, index, PageRank,
then the API and dashboard answering until Ctrl-C."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

PAGES = {  # name -> (title, body, links)
    "index.html": ("Python documentation index", "Welcome. Tutorial, library reference and glossary.",
                   ["tutorial.html", "library.html", "glossary.html"]),
    "tutorial.html": ("The Python tutorial", "Lists and list comprehensions make new lists from old ones.",
                      ["index.html", "library.html"]),
    "library.html": ("The Python standard library", "The asyncio event loop runs coroutines.",
                     ["index.html", "glossary.html"]),
    "glossary.html": ("Glossary", "Iterator: an object representing a stream of data.", ["index.html"]),
    "orphan.html": ("Reading files", "open a file and read its lines with readlines.", ["index.html"]),
}


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("site")
    for name, (title, body, links) in PAGES.items():
        anchors = "".join(f'<a href="{href}">{href}</a> ' for href in links)
        (root / name).write_text(f"<html><head><title>{title}</title></head><body><p>{body}</p>{anchors}"
                                 "</body></html>", encoding="utf-8")
    return root


def test_demo_ranks_with_given_models(site, tmp_path):
    """--models: trained models are copied in and the funnel's coarse stage ranks the crawled pages."""
    from funnel.core.config import load_config
    from funnel.cli.demo import run_demo
    from funnel.ranking.models.backbone import load_tokenizer
    from funnel.ranking.models.cross_encoder import build_cross_encoder, save_cross_encoder

    models = tmp_path / "models"
    save_cross_encoder(build_cross_encoder("tiny"), load_tokenizer("tiny"), models / "cross-encoder", {"max_length": 64})
    config = load_config(None, [f'paths.home="{tmp_path / "h"}"'])
    report = run_demo(config, site_dir=site, use_spark=False, dense=False, serve=False, models=models, progress=False)
    assert (report.home / "models" / "cross-encoder" / "config.json").exists()
    service_step = dict((s[0], s[1]) for s in report.steps)["search service"]
    assert "fine" in service_step and not any(s.startswith("cross-encoder") for s in report.skipped)


def test_demo_builds_a_searchable_home(site, tmp_path, capsys):
    from funnel.core.config import load_config
    from funnel.cli.demo import run_demo
    from funnel.index.pagerank import load_pagerank
    from funnel.index.searcher import Bm25Retriever

    config = load_config(None, [f'paths.home="{tmp_path}"'])
    report = run_demo(config, site_dir=site, use_spark=False, dense=False, serve=False, progress=False)
    home = tmp_path / "demo"
    assert report.home == home
    steps = [s[0] for s in report.steps]
    assert steps[:4] == ["site", "crawl", "index (local)", "PageRank (local)"] and "search service" in steps
    # orphan.html has no inlink: the crawler never reaches it
    assert "4 pages" in dict((s[0], s[1]) for s in report.steps)["crawl"]
    pr = load_pagerank(home)
    assert len(pr) == 4 and max(pr, key=pr.get).endswith("/index.html")  # the hub
    hits = Bm25Retriever.open(home / "index").search("list comprehensions", 2)
    assert hits.doc_ids[0].endswith("/tutorial.html")
    out = capsys.readouterr().out
    assert "SKIPPED dense index" in out and "top pages by PageRank" in out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "kill"])
def test_demo_serves_api_and_dashboard_until_interrupted(site, tmp_path, stop):
    api, dash = _free_port(), _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "funnel.cli.main", "-q", "--home", str(tmp_path), "--set", f"serve.port={api}",
         "--set", f"serve.dashboard_port={dash}", "demo", "--site-dir", str(site), "--no-spark", "--no-dense"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"},
        # as from a terminal: a test run started in the background (`nohup pytest &`) ignores SIGINT,
        # and its children would inherit that
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stdout.read()
            try:
                ok_api = httpx.get(f"http://127.0.0.1:{api}/health", timeout=1).status_code == 200
                ok_dash = httpx.get(f"http://127.0.0.1:{dash}/_stcore/health", timeout=1).status_code == 200
                if ok_api and ok_dash:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "demo did not start the API and dashboard within 120 s"
            time.sleep(0.5)
        hits = httpx.get(f"http://127.0.0.1:{api}/search", params={"q": "asyncio event loop"}).json()["hits"]
        assert hits[0]["doc_id"].endswith("/library.html") and hits[0]["title"] == "The Python standard library"
    finally:
        proc.send_signal(stop)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert f"API:        http://127.0.0.1:{api}" in out and f"Dashboard:  http://127.0.0.1:{dash}" in out


@pytest.mark.slow
@pytest.mark.spark
def test_demo_on_the_python_docs(tmp_path):
    """The README's main job without the dense index and servers: Debian's python3.11-doc crawled from
    loopback, Spark index and PageRank; the hubs lead PageRank and queries find the right pages."""
    from funnel.crawler.sites import debian_site
    from funnel.core.config import load_config
    from funnel.cli.demo import run_demo, top_pages
    from funnel.index.searcher import Bm25Retriever

    try:
        debian_site("python3.11-doc")
    except Exception as exc:  # noqa: BLE001 - no apt-get or no network to the Debian mirror
        pytest.skip(f"python3.11-doc not available: {exc}")
    config = load_config(None, [f'paths.home="{tmp_path}"', "spark.shuffle_partitions=2"])
    report = run_demo(config, use_spark=True, dense=False, serve=False, progress=False)
    crawl = dict((s[0], s[1]) for s in report.steps)["crawl"]
    assert int(crawl.split()[0]) >= 500, crawl
    demo = replace_home(config, report.home)
    hubs = {doc_id.rsplit("/", 1)[-1] for doc_id, _ in top_pages(demo, 5)}
    assert {"index.html", "genindex.html", "py-modindex.html"} & hubs, hubs
    hits = Bm25Retriever.open(report.home / "index").search("list comprehension", 5)
    assert any(d.endswith("tutorial/datastructures.html") for d in hits.doc_ids), hits.doc_ids


def replace_home(config, home):
    from dataclasses import replace

    return replace(config, paths=replace(config.paths, home=str(home)))

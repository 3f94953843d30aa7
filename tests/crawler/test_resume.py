"""Resuming a crawl: a robots.txt outage keeps URLs queued (never skipped for good), and the crawl's
settings (page cap, allow_private, politeness, depth) come back with its frontier."""
from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

from aiohttp import web

from funnel.cli.main import main
from funnel.crawler.crawl import crawl
from funnel.crawler.frontier import Frontier, State
from funnel.core.config import CrawlConfig
from funnel.core.store import DocumentStore
from tests.crawler.hostile_site import page, serve_app
from tests.crawler.test_crash import _count
from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
N = 40


def chain_site(requests: Counter, n: int | None = N, delay: float = 0.0) -> web.Application:
    """Page i links to i+1 and i+2 (below `n`; `n=None`: a link trap without end); robots.txt allows all."""
    async def robots(request):
        requests["/robots.txt"] += 1
        return web.Response(text="User-agent: *\nAllow: /\n")

    async def handler(request):
        i = int(request.match_info["i"])
        requests[i] += 1
        if delay:
            await asyncio.sleep(delay)
        links = "".join(f'<a href="/p/{j}.html">{j}</a>' for j in (i + 1, i + 2) if n is None or j < n)
        return web.Response(text=page(f"P{i}", f"<p>page {i} text {i * 31}</p>{links}"), content_type="text/html")

    app = web.Application()
    app.router.add_get("/robots.txt", robots)
    app.router.add_get("/p/{i}.html", handler)
    return app


def _states(home: Path) -> Counter:
    con = sqlite3.connect(home / "crawl" / "frontier.sqlite")
    try:
        return Counter(s for (s,) in con.execute("SELECT state FROM urls"))
    finally:
        con.close()


def test_robots_outage_at_resume_keeps_urls_queued(tmp_path, capsys):
    home = tmp_path / "home"
    port = free_port()
    requests: Counter = Counter()
    fast_fail = ["--set", "crawl.retries=0", "--set", "crawl.robots_retries=1", "--set", "crawl.robots_retry_wait=0.1"]
    with serve_app(chain_site(requests), port=port) as base:
        assert main(["-q", "--home", str(home), "crawl", base + "/p/0.html", "--allow-private",
                     "--concurrency", "2", "--max-pages", "10"]) == 0
    queued = _states(home)[State.QUEUED]
    assert queued > 0 and _count(home / "store.sqlite") == 10
    capsys.readouterr()
    # the site is down: robots.txt cannot be read; retried, then every URL stays queued and the run says so
    assert main(["-q", "--home", str(home), *fast_fail, "crawl", "--allow-private", "--max-pages", "1000"]) == 2
    out, err = capsys.readouterr()
    assert f"kept queued: {queued} URLs" in out and "robots.txt unreachable (URLs kept queued)" in out, out
    assert err.startswith("error: nothing could be crawled: robots.txt unreachable"), err
    states = _states(home)
    assert states[State.QUEUED] == queued and states[State.SKIPPED] == 0
    # the site is back (same address): the next resume, without flags, fetches every page
    with serve_app(chain_site(requests), port=port) as base:
        assert main(["-q", "--home", str(home), "crawl"]) == 0
    assert _count(home / "store.sqlite") == N
    assert _states(home) == Counter({State.STORED: N})
    assert all(requests[i] == 1 for i in range(N))


def test_robots_outage_during_a_run_is_retried_with_backoff(tmp_path):
    """The site is down when the crawl starts and back 0.5 s later: the robots.txt re-read finds it."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    requests: Counter = Counter()
    cfg = CrawlConfig(concurrency=2, retries=0, allow_private=True, robots_retries=5, robots_retry_wait=0.2)
    box = {}

    def run():
        with DocumentStore(tmp_path / "store.sqlite") as store:
            box["stats"] = crawl([base + "/p/0.html"], store, cfg, tmp_path / "f.sqlite", progress=False)

    thread = threading.Thread(target=run)
    thread.start()
    time.sleep(0.5)
    with serve_app(chain_site(requests), port=port):
        thread.join(60)
    stats = box["stats"]
    assert stats.stored == N and stats.deferred == 0 and stats.skipped == 0
    assert requests["/robots.txt"] == 1  # the failed reads never reached the server


def test_resume_keeps_the_page_cap_and_allow_private(tmp_path, capsys):
    """A 50-page crawl of a link trap, killed with SIGKILL, resumed with no flags: it stops at 50."""
    home = tmp_path / "home"
    requests: Counter = Counter()
    with serve_app(chain_site(requests, n=None, delay=0.02)) as base:
        proc = subprocess.Popen([sys.executable, "-m", "funnel.cli.main", "-q", "--home", str(home),
                                 "--set", "crawl.flush_every=2", "crawl", base + "/p/0.html", "--allow-private",
                                 "--max-pages", "50", "--concurrency", "2", "--delay", "0.01"],
                                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while _count(home / "store.sqlite") < 10 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None, "finished before the kill: " + proc.stderr.read().decode()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert _count(home / "store.sqlite") < 50
        assert main(["-q", "--home", str(home), "crawl"]) == 0  # no seeds, no flags
        capsys.readouterr()
        frontier = Frontier(home / "crawl" / "frontier.sqlite")
        assert frontier.requested() == 50 == _count(home / "store.sqlite")
        settings = frontier.get_meta("settings")
        assert settings["max_pages"] == 50 and settings["allow_private"] is True
        assert settings["per_host_delay"] == 0.01 and settings["concurrency"] == 2
        frontier.close()
        pages = [k for k in requests if k != "/robots.txt"]
        assert len(pages) <= 50 + 4  # the trap was not followed past the cap (a few pages in flight at the kill)
        # a flag given at resume wins, and is saved for the next resume
        assert main(["-q", "--home", str(home), "crawl", "--max-pages", "60"]) == 0
        assert "crawled 10 URLs" in capsys.readouterr().out
        assert main(["-q", "--home", str(home), "crawl"]) == 0
        assert "crawled 0 URLs" in capsys.readouterr().out
        frontier = Frontier(home / "crawl" / "frontier.sqlite")
        assert frontier.requested() == 60 and frontier.get_meta("settings")["max_pages"] == 60
        frontier.close()


def test_resumed_config_explicit_wins():
    from funnel.crawler.crawl import resumed_config

    cfg = replace(CrawlConfig(), max_pages=7)
    saved = {"max_pages": 50, "allow_private": True, "per_host_delay": 0.5, "unknown": 1}
    out = resumed_config(cfg, saved, explicit={"max_pages"})
    assert (out.max_pages, out.allow_private, out.per_host_delay) == (7, True, 0.5)
    assert resumed_config(cfg, None) is cfg

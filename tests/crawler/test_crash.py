"""Crash safety: `funnel crawl` killed with SIGKILL mid-crawl, then restarted, ends with every page exactly once."""
from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from aiohttp import web

from tests.crawler.hostile_site import page, serve_app

ROOT = Path(__file__).resolve().parents[2]
N_PAGES = 150


def grid_site(requests: Counter) -> web.Application:
    """N_PAGES pages, page i links to i+1..i+5 (mod N) and to page 0: all reachable from page 0."""
    async def handler(request):
        i = int(request.match_info["i"])
        requests[i] += 1
        await asyncio.sleep(0.01)  # slow enough that the kill lands mid-crawl
        links = "".join(f'<a href="/p/{(i + k) % N_PAGES}.html">next {k}</a>' for k in range(1, 6))
        return web.Response(text=page(f"Page {i}", f"<p>page number {i} words {i * 17}</p>{links}"
                                                   '<a href="/p/0.html">home</a>'), content_type="text/html")

    app = web.Application()
    app.router.add_get("/p/{i}.html", handler)
    return app


def _count(db: Path) -> int:
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        try:
            return con.execute("SELECT COUNT(*) FROM docs").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def _crawl_cmd(home: Path, *seeds: str) -> list[str]:
    return [sys.executable, "-m", "funnel.cli.main", "-q", "--home", str(home), "--set", "crawl.flush_every=5",
            "crawl", *seeds, "--allow-private", "--concurrency", "4", "--max-pages", "1000"]


def test_kill_9_then_resume_loses_and_duplicates_nothing(tmp_path):
    requests: Counter = Counter()
    home = tmp_path / "home"
    db = home / "store.sqlite"
    with serve_app(grid_site(requests)) as base:
        proc = subprocess.Popen(_crawl_cmd(home, base + "/p/0.html"), cwd=ROOT, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while _count(db) < 30 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None, "the crawl finished before it could be killed: " + proc.stderr.read().decode()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        killed_at = _count(db)
        assert 30 <= killed_at < N_PAGES
        done = subprocess.run(_crawl_cmd(home), cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    con = sqlite3.connect(db)
    ids = [r[0] for r in con.execute("SELECT doc_id FROM docs")]
    assert sorted(ids) == sorted(f"{base}/p/{i}.html" for i in range(N_PAGES))  # all, once each
    expected_links = sum(len(({(i + k) % N_PAGES for k in range(1, 6)} | {0}) - {i}) for i in range(N_PAGES))
    assert con.execute("SELECT COUNT(*) FROM links").fetchone()[0] == expected_links
    assert con.execute("SELECT COUNT(*) FROM links WHERE dst NOT IN (SELECT doc_id FROM docs)").fetchone()[0] == 0
    fcon = sqlite3.connect(home / "crawl" / "frontier.sqlite")
    assert fcon.execute("SELECT COUNT(*) FROM urls WHERE state != 1").fetchone()[0] == 0
    assert set(requests) == set(range(N_PAGES))
    # only pages in flight, or parsed but not yet committed, at the kill are fetched a second time
    assert sum(requests.values()) - N_PAGES <= 4 + 2 * 5

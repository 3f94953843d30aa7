"""The crawl frontier: every URL the crawler has seen, persisted in SQLite so a killed crawl resumes.

A URL enters as ``queued`` and leaves that state only in the same transaction that records its
outcome, which the crawler commits *after* the page is in the document store. So after ``kill -9``
every page is either in the store and marked done, or still queued (and fetched again on restart,
replacing its own document: the store's ``doc_id`` is unique). Nothing is lost, nothing duplicated.

Files
-----
``HOME/crawl/frontier.sqlite`` (WAL), format version 1:

- ``urls``: ``url`` (canonical, unique), ``depth`` (links from a seed), ``state`` (see `State`),
  ``status`` (last HTTP status), ``doc_id`` (the document this URL ended up as: itself, the target
  of a redirect or ``rel=canonical``, or the page it duplicates), ``error`` (why it failed or was
  skipped), ``fetched_at`` (unix seconds), ``requested`` (1 if this URL itself was fetched: what
  ``max_pages`` counts; 0 for a robots.txt skip or a redirect/canonical target recorded in passing).
  Rows are taken in insertion order (breadth first).
- ``meta``: ``key`` -> JSON ``value``; ``scope`` = ``{"hosts": [...], "prefixes": [...]}`` and
  ``settings`` = ``{"max_pages", "max_depth", "concurrency", "per_host_concurrency", "per_host_delay",
  "allow_private", "sitemaps"}`` (``crawl.RESUMED_SETTINGS``), so a resumed crawl keeps the scope and
  settings it started with. A ``queued`` row may carry an ``error``: why the last run left it queued
  (its host's robots.txt could not be read).
"""
from __future__ import annotations

import json
import sqlite3
from collections import deque
from collections.abc import Iterable
from pathlib import Path

FORMAT_VERSION = 1


class State:
    QUEUED = 0
    STORED = 1  # fetched and written to the store under doc_id == url
    ALIAS = 2  # fetched; the page is stored under another doc_id (redirect, rel=canonical, exact duplicate)
    FAILED = 3  # 4xx, 5xx after retries, timeout, refused, too large, ...
    SKIPPED = 4  # robots.txt disallow, non-text content, noindex


_SCHEMA = """
CREATE TABLE IF NOT EXISTS urls (
    url TEXT PRIMARY KEY,
    depth INTEGER NOT NULL,
    state INTEGER NOT NULL DEFAULT 0,
    status INTEGER,
    doc_id TEXT,
    error TEXT,
    fetched_at REAL,
    requested INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS urls_state ON urls(state);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class Frontier:
    """Seen-set plus FIFO queue, mirrored in memory for speed and on disk for resumption."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # check_same_thread=False: the crawler commits from a worker thread, one commit at a time
        self._con = sqlite3.connect(self.path, isolation_level=None, timeout=60, check_same_thread=False)
        self._con.execute("PRAGMA journal_mode=WAL")
        self._con.execute("PRAGMA synchronous=NORMAL")
        self._con.executescript(_SCHEMA)
        self._con.execute(f"PRAGMA user_version = {FORMAT_VERSION}")
        self._seen: set[str] = {u for (u,) in self._con.execute("SELECT url FROM urls")}
        self._queue: deque[tuple[str, int]] = deque(
            self._con.execute("SELECT url, depth FROM urls WHERE state = 0 ORDER BY rowid"))
        self._pending: list[tuple[str, int]] = []  # discovered, not yet on disk

    # -- queue -----------------------------------------------------------
    def add(self, urls: Iterable[tuple[str, int]]) -> int:
        """Queue unseen ``(url, depth)`` pairs (written on the next `commit`); returns how many were new."""
        n = 0
        for url, depth in urls:
            if url not in self._seen:
                self._seen.add(url)
                self._queue.append((url, depth))
                self._pending.append((url, depth))
                n += 1
        return n

    def mark_seen(self, url: str) -> None:
        """A URL that got an outcome without being queued (a redirect or canonical target)."""
        self._seen.add(url)

    def seen(self, url: str) -> bool:
        return url in self._seen

    def pop(self) -> tuple[str, int] | None:
        return self._queue.popleft() if self._queue else None

    def __len__(self) -> int:
        return len(self._queue)

    # -- outcomes --------------------------------------------------------
    def take_pending(self) -> list[tuple[str, int]]:
        """The URLs queued since the last call, to be written by `commit` (call from the crawl's own thread)."""
        pending, self._pending = self._pending, []
        return pending

    def commit(self, new_urls: list[tuple[str, int]],
               outcomes: Iterable[tuple[str, int, int, int | None, str | None, str | None, float, int]] = (),
               meta: dict | None = None) -> None:
        """One transaction: `new_urls` from `take_pending`, then ``(url, depth, state, status, doc_id, error,
        fetched_at, requested)`` outcomes, then `meta` keys. An outcome for a URL never queued (a redirect
        target) is inserted directly.
        """
        rows = list(outcomes)
        with self._con:
            self._con.execute("BEGIN")
            for key, value in (meta or {}).items():
                self._con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))
            if new_urls:
                self._con.executemany("INSERT OR IGNORE INTO urls (url, depth) VALUES (?, ?)", new_urls)
            if rows:
                self._con.executemany(
                    "INSERT INTO urls (url, depth, state, status, doc_id, error, fetched_at, requested)"
                    " VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(url) DO UPDATE SET state=excluded.state,"
                    " status=excluded.status, doc_id=excluded.doc_id, error=excluded.error,"
                    " fetched_at=excluded.fetched_at, requested=MAX(requested, excluded.requested)", rows)

    def counts(self) -> dict[str, int]:
        names = {State.QUEUED: "queued", State.STORED: "stored", State.ALIAS: "alias",
                 State.FAILED: "failed", State.SKIPPED: "skipped"}
        out = dict.fromkeys(names.values(), 0)
        for state, n in self._con.execute("SELECT state, COUNT(*) FROM urls GROUP BY state"):
            out[names[state]] = n
        return out

    def get_meta(self, key: str):
        row = self._con.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def set_meta(self, key: str, value) -> None:
        self._con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    def requested(self) -> int:
        """How many URLs were fetched over all runs (what ``max_pages`` limits)."""
        return self._con.execute("SELECT COUNT(*) FROM urls WHERE requested = 1").fetchone()[0]

    def aliases(self) -> dict[str, str]:
        """url -> doc_id for every URL stored under another document (for rewriting link targets)."""
        return dict(self._con.execute("SELECT url, doc_id FROM urls WHERE state = ? AND doc_id IS NOT NULL",
                                      (State.ALIAS,)))

    def rows(self) -> list[tuple]:
        return self._con.execute(
            "SELECT url, depth, state, status, doc_id, error FROM urls ORDER BY rowid").fetchall()

    def close(self) -> None:
        self._con.close()

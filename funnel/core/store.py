"""Document store: the one place every producer (crawler, BEIR ingest) writes and every consumer reads.

SQLite in WAL mode: one writer and many concurrent readers; every write method is
one transaction, so a failed batch leaves the store exactly as it was.

Files
-----
``store.sqlite`` (+ ``-wal``/``-shm`` while open), schema version 1:

- ``docs``: ``seq`` (INTEGER, increases on every insert or update: incremental
  indexing reads ``seq > last indexed``), ``doc_id`` (TEXT, unique; the canonical
  URL for crawled pages), ``url``, ``title``, ``text``, ``source`` ("beir:NAME",
  "crawl"), ``fetched_at`` (unix seconds), ``content_hash`` (sha256 hex of the
  text), ``status`` (HTTP status, NULL for ingest), ``meta`` (JSON object).
- ``links``: ``src`` (doc_id), ``dst`` (target URL, canonical), ``anchor`` (text).
- ``queries``: ``query_id``, ``text``, ``dataset``.
- ``qrels``: ``dataset``, ``split``, ``query_id``, ``doc_id``, ``score``.
- ``interactions`` (recommendation log): ``user_id`` (TEXT), ``item_id`` (TEXT, a
  ``docs.doc_id``, so search and recommendation share item ids), ``ts`` (INTEGER unix
  seconds), ``value`` (REAL, e.g. a rating; NULL for implicit feedback), ``dataset``.
- ``users``: ``user_id``, ``dataset``, ``meta`` (JSON object, e.g. age, gender, occupation).
  Both tables were added without a schema version bump: an older store gains them, empty,
  when it is next opened for writing. ``write_interactions`` replaces a dataset's rows.

Parquet export (``export_parquet``) writes ``docs.parquet`` (the docs columns) and
``links.parquet`` (src, dst, anchor): the input of the Spark pipelines; and
``interactions.parquet`` (user_id, item_id, ts int64, value float64, dataset) when the
store holds interactions.
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from funnel.core.errors import FunnelError, InputError

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS docs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    doc_id TEXT NOT NULL UNIQUE,
    url TEXT,
    title TEXT NOT NULL DEFAULT '',
    text TEXT NOT NULL DEFAULT '',
    source TEXT NOT NULL DEFAULT '',
    fetched_at REAL,
    content_hash TEXT,
    status INTEGER,
    meta TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS links (
    src TEXT NOT NULL,
    dst TEXT NOT NULL,
    anchor TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS links_src ON links(src);
CREATE TABLE IF NOT EXISTS queries (
    query_id TEXT NOT NULL,
    dataset TEXT NOT NULL,
    text TEXT NOT NULL,
    PRIMARY KEY (dataset, query_id)
);
CREATE TABLE IF NOT EXISTS qrels (
    dataset TEXT NOT NULL,
    split TEXT NOT NULL,
    query_id TEXT NOT NULL,
    doc_id TEXT NOT NULL,
    score INTEGER NOT NULL,
    PRIMARY KEY (dataset, split, query_id, doc_id)
);
CREATE TABLE IF NOT EXISTS interactions (
    user_id TEXT NOT NULL,
    item_id TEXT NOT NULL,
    ts INTEGER NOT NULL,
    value REAL,
    dataset TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS interactions_user ON interactions(dataset, user_id);
CREATE TABLE IF NOT EXISTS users (
    user_id TEXT NOT NULL,
    dataset TEXT NOT NULL,
    meta TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (dataset, user_id)
);
"""


@dataclass
class Link:
    url: str
    anchor: str = ""


@dataclass
class Document:
    doc_id: str
    title: str = ""
    text: str = ""
    url: str | None = None
    outlinks: list[Link] = field(default_factory=list)
    source: str = ""
    fetched_at: float | None = None
    content_hash: str | None = None
    status: int | None = None
    meta: dict = field(default_factory=dict)
    seq: int | None = None  # set by the store

    def __post_init__(self):
        if self.content_hash is None:
            self.content_hash = content_hash(self.text)


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


_DOC_COLUMNS = "seq, doc_id, url, title, text, source, fetched_at, content_hash, status, meta"


def _row_to_doc(row: tuple) -> Document:
    seq, doc_id, url, title, text, source, fetched_at, chash, status, meta = row
    return Document(doc_id=doc_id, url=url, title=title, text=text, source=source, fetched_at=fetched_at,
                    content_hash=chash, status=status, meta=json.loads(meta), seq=seq)


class DocumentStore:
    """SQLite-backed store. Thread-safe: each thread gets its own connection."""

    def __init__(self, path: str | Path, *, readonly: bool = False):
        self.path = Path(path)
        self.readonly = readonly
        if readonly and not self.path.exists():
            raise FunnelError(f"document store {self.path} does not exist: ingest or crawl something first "
                              "(`funnel ingest beir DIR` or `funnel crawl URL`)")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        if not readonly:
            self._con.executescript(_SCHEMA)  # idempotent (IF NOT EXISTS); commits by itself
            self._con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    # -- connections -----------------------------------------------------
    @property
    def _con(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            # percent-encoded (Path.as_uri): a raw '#', '?' or '%' in the path would end or change the URI
            uri = self.path.absolute().as_uri() + ("?mode=ro" if self.readonly else "")
            con = sqlite3.connect(uri, uri=True, timeout=60, isolation_level=None, check_same_thread=False)
            if self.readonly:
                con = self._readable(con, uri)
            if not self.readonly:
                con.execute("PRAGMA journal_mode=WAL")
                con.execute("PRAGMA synchronous=NORMAL")
            self._local.con = con
        return con

    @staticmethod
    def _readable(con: sqlite3.Connection, uri: str) -> sqlite3.Connection:
        """A read-only connection that can read. A WAL database needs its ``-shm`` file, which SQLite
        creates on first read: in a read-only folder (a read-only home, a snapshot) without one, every
        read fails with "unable to open database file". No process can write there either, so the
        database is opened as immutable, the way SQLite documents for read-only media."""
        try:
            con.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
            return con
        except sqlite3.OperationalError:
            con.close()
        con = sqlite3.connect(uri + "&immutable=1", uri=True, timeout=60, isolation_level=None,
                              check_same_thread=False)
        con.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        return con

    def _tx(self):
        store = self

        class _Tx:
            def __enter__(self):
                store._con.execute("BEGIN IMMEDIATE")
                return store._con

            def __exit__(self, exc_type, exc, tb):
                store._con.execute("ROLLBACK" if exc_type else "COMMIT")
                return False

        return _Tx()

    def close(self) -> None:
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- writes ----------------------------------------------------------
    @staticmethod
    def _insert_docs(con: sqlite3.Connection, docs: Iterable[Document]) -> int:
        n = 0
        for doc in docs:
            con.execute("DELETE FROM docs WHERE doc_id = ?", (doc.doc_id,))
            con.execute(
                "INSERT INTO docs (doc_id, url, title, text, source, fetched_at, content_hash, status, meta)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (doc.doc_id, doc.url, doc.title, doc.text, doc.source, doc.fetched_at, doc.content_hash,
                 doc.status, json.dumps(doc.meta, ensure_ascii=False)),
            )
            con.execute("DELETE FROM links WHERE src = ?", (doc.doc_id,))
            if doc.outlinks:
                con.executemany("INSERT INTO links (src, dst, anchor) VALUES (?, ?, ?)",
                                [(doc.doc_id, link.url, link.anchor) for link in doc.outlinks])
            n += 1
        return n

    @staticmethod
    def _refuse_other_sources(con: sqlite3.Connection, docs: list[Document]) -> None:
        con.execute("CREATE TEMP TABLE IF NOT EXISTS _incoming (doc_id TEXT PRIMARY KEY, source TEXT NOT NULL)")
        con.execute("DELETE FROM _incoming")
        con.executemany("INSERT OR REPLACE INTO _incoming VALUES (?, ?)", [(d.doc_id, d.source) for d in docs])
        clashes = con.execute("SELECT d.doc_id, d.source, i.source FROM docs d JOIN _incoming i USING (doc_id)"
                              " WHERE d.source != i.source LIMIT 4").fetchall()
        con.execute("DELETE FROM _incoming")
        if clashes:
            (doc_id, have, new), more = clashes[0], len(clashes) - 1
            raise InputError(f"document id {doc_id!r} is already in the store from {have!r}, and {new!r} has it too"
                             + (f" (and {'3+' if more == 3 else more} more)" if more else "")
                             + ": ids must be unique across sources; load this one into another --home")

    def put_docs(self, docs: Iterable[Document]) -> int:
        """Insert or replace documents (and their outlinks) in one transaction; returns the count.

        A replaced document gets a new ``seq``, so incremental indexing picks it up again.
        """
        with self._tx() as con:
            return self._insert_docs(con, docs)

    def write_batch(self, docs: Iterable[Document], dataset: str | None = None,
                    queries: Iterable[tuple[str, str]] = (),
                    qrels: dict[str, Iterable[tuple[str, str, int]]] | None = None) -> int:
        """Documents plus (optionally) a dataset's queries and per-split judgements, in one transaction.

        A document id the store already holds from another source (another dataset, the crawler) is
        refused: replacing its text would leave that source's judgements pointing at other text.
        """
        docs = list(docs)
        with self._tx() as con:
            self._refuse_other_sources(con, docs)
            n = self._insert_docs(con, docs)
            if dataset is not None:
                con.execute("DELETE FROM queries WHERE dataset = ?", (dataset,))
                con.executemany("INSERT INTO queries (query_id, dataset, text) VALUES (?, ?, ?)",
                                [(qid, dataset, text) for qid, text in queries])
                for split, rows in (qrels or {}).items():
                    con.execute("DELETE FROM qrels WHERE dataset = ? AND split = ?", (dataset, split))
                    con.executemany("INSERT INTO qrels VALUES (?, ?, ?, ?, ?)",
                                    [(dataset, split, q, d, s) for q, d, s in rows])
        return n

    def write_interactions(self, dataset: str, interactions: Iterable[tuple[str, str, int, float | None]],
                           users: Iterable[tuple[str, dict]] = (), docs: Iterable[Document] = ()) -> tuple[int, int]:
        """Replace ``dataset``'s interaction log and users (and put its item documents), in one transaction.

        interactions: (user_id, item_id, ts, value or None); users: (user_id, meta dict). Returns the
        counts written (interactions, users). Documents go through the same source check as `write_batch`.
        """
        docs = list(docs)
        with self._tx() as con:
            if docs:
                self._refuse_other_sources(con, docs)
                self._insert_docs(con, docs)
            con.execute("DELETE FROM interactions WHERE dataset = ?", (dataset,))
            con.execute("DELETE FROM users WHERE dataset = ?", (dataset,))
            n = con.executemany("INSERT INTO interactions (user_id, item_id, ts, value, dataset) VALUES (?, ?, ?, ?, ?)",
                                ((str(u), str(i), int(t), None if v is None else float(v), dataset)
                                 for u, i, t, v in interactions)).rowcount
            m = con.executemany("INSERT OR REPLACE INTO users (user_id, dataset, meta) VALUES (?, ?, ?)",
                                ((str(u), dataset, json.dumps(meta, ensure_ascii=False)) for u, meta in users)).rowcount
        return n, m

    # -- reads -----------------------------------------------------------
    def count(self) -> int:
        return self._con.execute("SELECT COUNT(*) FROM docs").fetchone()[0]

    def max_seq(self) -> int:
        return self._con.execute("SELECT COALESCE(MAX(seq), 0) FROM docs").fetchone()[0]

    def get(self, doc_id: str) -> Document | None:
        row = self._con.execute(f"SELECT {_DOC_COLUMNS} FROM docs WHERE doc_id = ?", (doc_id,)).fetchone()
        if row is None:
            return None
        doc = _row_to_doc(row)
        doc.outlinks = self.outlinks(doc_id)
        return doc

    def get_many(self, doc_ids: Iterable[str]) -> dict[str, Document]:
        ids = list(doc_ids)
        out: dict[str, Document] = {}
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            marks = ",".join("?" * len(chunk))
            for row in self._con.execute(f"SELECT {_DOC_COLUMNS} FROM docs WHERE doc_id IN ({marks})", chunk):
                doc = _row_to_doc(row)
                out[doc.doc_id] = doc
        return out

    def outlinks(self, doc_id: str) -> list[Link]:
        return [Link(u, a) for u, a in
                self._con.execute("SELECT dst, anchor FROM links WHERE src = ? ORDER BY rowid", (doc_id,))]

    def iter_docs(self, after_seq: int = 0, upto_seq: int | None = None, batch: int = 2000) -> Iterator[Document]:
        """Documents in ``seq`` order with ``after_seq < seq <= upto_seq``."""
        upto = self.max_seq() if upto_seq is None else upto_seq
        last = after_seq
        while True:
            rows = self._con.execute(
                f"SELECT {_DOC_COLUMNS} FROM docs WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?",
                (last, upto, batch)).fetchall()
            if not rows:
                return
            for row in rows:
                yield _row_to_doc(row)
            last = rows[-1][0]

    def iter_links(self) -> Iterator[tuple[str, str]]:
        yield from self._con.execute("SELECT src, dst FROM links")

    def queries(self, dataset: str | None = None) -> dict[str, str]:
        if dataset is None:
            rows = self._con.execute("SELECT query_id, text FROM queries")
        else:
            rows = self._con.execute("SELECT query_id, text FROM queries WHERE dataset = ?", (dataset,))
        return dict(rows)

    def qrels(self, dataset: str, split: str) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for q, d, s in self._con.execute(
                "SELECT query_id, doc_id, score FROM qrels WHERE dataset = ? AND split = ?", (dataset, split)):
            out.setdefault(q, {})[d] = s
        return out

    def _has_table(self, name: str) -> bool:
        # a read-only handle on a store older than the table has no such table: read it as empty
        return self._con.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                                 (name,)).fetchone() is not None

    def interaction_datasets(self) -> dict[str, int]:
        """{dataset: interactions} of every logged dataset."""
        if not self._has_table("interactions"):
            return {}
        return dict(self._con.execute("SELECT dataset, COUNT(*) FROM interactions GROUP BY dataset ORDER BY dataset"))

    def interactions(self, dataset: str | None = None) -> list[tuple[str, str, int, float | None]]:
        """(user_id, item_id, ts, value) rows of one dataset (None: all), in insertion order."""
        if not self._has_table("interactions"):
            return []
        if dataset is None:
            return self._con.execute("SELECT user_id, item_id, ts, value FROM interactions ORDER BY rowid").fetchall()
        return self._con.execute("SELECT user_id, item_id, ts, value FROM interactions WHERE dataset = ? ORDER BY rowid",
                                 (dataset,)).fetchall()

    def users(self, dataset: str | None = None) -> dict[str, dict]:
        """{user_id: meta} of one dataset (None: all)."""
        if not self._has_table("users"):
            return {}
        if dataset is None:
            rows = self._con.execute("SELECT user_id, meta FROM users")
        else:
            rows = self._con.execute("SELECT user_id, meta FROM users WHERE dataset = ?", (dataset,))
        return {u: json.loads(m) for u, m in rows}

    def docs_of_source(self, source: str) -> Iterator[Document]:
        """Documents whose ``source`` is `source`, in seq order (a recommendation dataset's items)."""
        for row in self._con.execute(f"SELECT {_DOC_COLUMNS} FROM docs WHERE source = ? ORDER BY seq", (source,)):
            yield _row_to_doc(row)

    def crawl_fingerprints(self) -> Iterator[tuple[str, str, dict]]:
        """``(doc_id, content_hash, meta)`` of crawled documents, in seq order (the crawler's dedup state)."""
        for doc_id, chash, meta in self._con.execute(
                "SELECT doc_id, content_hash, meta FROM docs WHERE source = 'crawl' ORDER BY seq"):
            yield doc_id, chash, json.loads(meta)

    def rewrite_link_targets(self, mapping: dict[str, str]) -> int:
        """Point links whose ``dst`` is a key of `mapping` at its value (crawled aliases); one transaction."""
        if not mapping:
            return 0
        with self._tx() as con:
            # one pass over links through a keyed temp table (there is no index on dst)
            con.execute("CREATE TEMP TABLE IF NOT EXISTS _alias (k TEXT PRIMARY KEY, v TEXT NOT NULL)")
            con.execute("DELETE FROM _alias")
            con.executemany("INSERT OR REPLACE INTO _alias VALUES (?, ?)", mapping.items())
            n = con.execute("UPDATE links SET dst = (SELECT v FROM _alias WHERE k = links.dst)"
                            " WHERE dst IN (SELECT k FROM _alias)").rowcount
            con.execute("DELETE FROM _alias")
            return n

    # -- export ----------------------------------------------------------
    def export_parquet(self, out_dir: str | Path) -> tuple[Path, Path]:
        """Write docs.parquet and links.parquet (the Spark pipelines' input); returns their paths."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        docs_path, links_path = out_dir / "docs.parquet", out_dir / "links.parquet"
        schema = pa.schema([("seq", pa.int64()), ("doc_id", pa.string()), ("url", pa.string()),
                            ("title", pa.string()), ("text", pa.string()), ("source", pa.string()),
                            ("fetched_at", pa.float64()), ("content_hash", pa.string()),
                            ("status", pa.int32()), ("meta", pa.string())])
        cols = [f.name for f in schema]
        with pq.ParquetWriter(docs_path.with_suffix(".tmp"), schema) as writer:
            cur = self._con.execute(f"SELECT {_DOC_COLUMNS} FROM docs ORDER BY seq")
            while rows := cur.fetchmany(5000):
                writer.write_table(pa.table({c: [r[i] for r in rows] for i, c in enumerate(cols)}, schema=schema))
        docs_path.with_suffix(".tmp").replace(docs_path)
        rows = self._con.execute("SELECT src, dst, anchor FROM links ORDER BY rowid").fetchall()
        links = pa.table({"src": [r[0] for r in rows], "dst": [r[1] for r in rows], "anchor": [r[2] for r in rows]},
                         schema=pa.schema([("src", pa.string()), ("dst", pa.string()), ("anchor", pa.string())]))
        pq.write_table(links, links_path.with_suffix(".tmp"))
        links_path.with_suffix(".tmp").replace(links_path)
        if self.interaction_datasets():
            inter_path = out_dir / "interactions.parquet"
            data = self._con.execute("SELECT user_id, item_id, ts, value, dataset FROM interactions ORDER BY rowid").fetchall()
            schema = pa.schema([("user_id", pa.string()), ("item_id", pa.string()), ("ts", pa.int64()),
                                ("value", pa.float64()), ("dataset", pa.string())])
            table = pa.table({f.name: [r[i] for r in data] for i, f in enumerate(schema)}, schema=schema)
            pq.write_table(table, inter_path.with_suffix(".tmp"))
            inter_path.with_suffix(".tmp").replace(inter_path)
        return docs_path, links_path


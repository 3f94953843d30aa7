"""Fault injection: `kill -9` a real `python -m funnel.cli.main ...` process mid-run, run the same command
again, and compare what is on disk with an uninterrupted run (shared by `tests/faults/` and
`benchmarks/faults.py`).

Each fault is a class with ``prepare`` (inputs, once), ``reference`` (the uninterrupted result, once),
``start`` (a fresh home and the command to kill), ``resume`` (the command run after the kill) and
``compare`` -> (lost, duplicated). `inject` runs one injection: the command is killed ``delay`` seconds
after it started; a command that ended before its kill is not counted as an injection.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def funnel_cmd(home: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "funnel.cli.main", "-q", "--home", str(home), *args]


def run(cmd: list[str], timeout: float = 300) -> float:
    """Run to the end (it must succeed); returns its wall time in seconds."""
    t0 = time.monotonic()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return time.monotonic() - t0


def kill_after(cmd: list[str], delay: float) -> bool:
    """Start `cmd`, SIGKILL it after `delay` seconds; True if it was still running (a real injection)."""
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    try:
        proc.wait(delay)
        return False
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        return True


def _rows(db: Path, sql: str) -> list[tuple]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def store_fingerprint(db: Path) -> dict[str, Counter]:
    """Every row that matters, as multisets: a lost row is missing, a duplicated one counts twice."""
    assert _rows(db, "PRAGMA integrity_check") == [("ok",)]
    return {"docs": Counter(_rows(db, "SELECT doc_id, content_hash, title, text FROM docs")),
            "links": Counter(_rows(db, "SELECT src, dst, anchor FROM links")),
            "queries": Counter(_rows(db, "SELECT dataset, query_id, text FROM queries")),
            "qrels": Counter(_rows(db, "SELECT dataset, split, query_id, doc_id, score FROM qrels"))}


def diff(ref: dict[str, Counter], got: dict[str, Counter]) -> tuple[int, int]:
    """(lost, duplicated) rows of `got` against `ref`, over every table."""
    lost = sum(sum((ref[k] - got[k]).values()) for k in ref)
    extra = sum(sum((got[k] - ref[k]).values()) for k in ref)
    return lost, extra


@dataclass
class Injection:
    fault: str
    killed: bool
    delay: float
    lost: int
    duplicated: int
    recovery_s: float


class Fault:
    name = ""

    def __init__(self, work: Path):
        self.work = work
        self.work.mkdir(parents=True, exist_ok=True)
        self._ref = None
        self.reference_s = 0.0

    def prepare(self) -> None: ...
    def start(self, home: Path) -> list[str]: ...
    def resume(self, home: Path) -> list[str]:
        return self.start(home)
    def result(self, home: Path): ...
    def compare(self, ref, got) -> tuple[int, int]:
        return diff(ref, got)

    def setup_home(self, home: Path) -> None:
        """Whatever the killed command needs in `home` before it starts."""

    def reference(self):
        if self._ref is None:
            self.prepare()
            home = self.work / "reference"
            shutil.rmtree(home, ignore_errors=True)
            self.setup_home(home)
            self.reference_s = run(self.start(home))
            self._ref = self.result(home)
        return self._ref

    def inject(self, delay: float, i: int) -> Injection:
        ref = self.reference()
        home = self.work / f"run-{i}"
        shutil.rmtree(home, ignore_errors=True)
        self.setup_home(home)
        killed = kill_after(self.start(home), delay)
        recovery = run(self.resume(home))
        lost, dup = self.compare(ref, self.result(home))
        shutil.rmtree(home, ignore_errors=True)
        return Injection(self.name, killed, delay, lost, dup, recovery)


class IngestFault(Fault):
    """`funnel ingest beir` of a generated corpus (one transaction), killed, then run again."""
    name = "ingest (funnel ingest beir)"

    def __init__(self, work: Path, n_docs: int = 40_000):
        super().__init__(work)
        self.n_docs = n_docs
        self.data = work / "corpus"

    def prepare(self) -> None:
        if (self.data / "queries.jsonl").exists():
            return
        rng = random.Random(7)
        words = [f"w{i}" for i in range(3000)]
        (self.data / "qrels").mkdir(parents=True, exist_ok=True)
        with open(self.data / "corpus.jsonl", "w", encoding="utf-8") as f:
            for d in range(self.n_docs):
                f.write(json.dumps({"_id": f"d{d}", "title": f"doc {d}",
                                    "text": " ".join(rng.choices(words, k=60))}) + "\n")
        with open(self.data / "queries.jsonl", "w", encoding="utf-8") as f:
            for q in range(300):
                f.write(json.dumps({"_id": f"q{q}", "text": " ".join(rng.choices(words, k=4))}) + "\n")
        with open(self.data / "qrels" / "test.tsv", "w", encoding="utf-8") as f:
            f.write("query-id\tcorpus-id\tscore\n")
            for q in range(300):
                for d in rng.sample(range(self.n_docs), 5):
                    f.write(f"q{q}\td{d}\t{rng.randint(1, 2)}\n")

    def start(self, home: Path) -> list[str]:
        return funnel_cmd(home, "ingest", "beir", str(self.data), "--name", "gen")

    def result(self, home: Path):
        return store_fingerprint(home / "store.sqlite")


class IndexFault(Fault):
    """`funnel index` over a store of the generated corpus, killed, then run again: the index must hold
    every document once and score exactly like an uninterrupted build."""
    name = "index (funnel index)"
    QUERIES = ("w1 w2 w3", "w100 w2000", "w42", "w7 w77 w777 w2777", "w2999 w0")

    def __init__(self, work: Path, ingest: IngestFault):
        super().__init__(work)
        self.ingest = ingest
        self.base = work / "ingested"

    def prepare(self) -> None:
        self.ingest.prepare()
        if not (self.base / "store.sqlite").exists():
            run(self.ingest.start(self.base))

    def setup_home(self, home: Path) -> None:
        home.mkdir(parents=True)
        for name in ("store.sqlite",):
            shutil.copy2(self.base / name, home / name)

    def start(self, home: Path) -> list[str]:
        return funnel_cmd(home, "index")

    def result(self, home: Path):
        from funnel.index.searcher import Bm25Retriever

        retriever = Bm25Retriever.open(home / "index")
        reader = retriever.reader
        live = Counter(d for d, ok in zip(reader.doc_ids, reader.live) if ok)
        runs = []
        for q in self.QUERIES:
            hits = retriever.search(q, k=20)
            runs.append([(d, round(float(s), 9)) for d, s in zip(hits.doc_ids, hits.scores)])
        return {"docs": live, "runs": runs}

    def compare(self, ref, got) -> tuple[int, int]:
        lost = sum((ref["docs"] - got["docs"]).values())
        dup = sum((got["docs"] - ref["docs"]).values())
        assert got["runs"] == ref["runs"], "scores differ from an uninterrupted build"
        return lost, dup


class CrawlFault(Fault):
    """`funnel crawl` of a 150-page loopback site, killed, then resumed with no seeds (no flags)."""
    name = "crawl (funnel crawl, resumed)"

    def __init__(self, work: Path, base: str):
        super().__init__(work)
        self.base = base

    def start(self, home: Path) -> list[str]:
        return funnel_cmd(home, "--set", "crawl.flush_every=5", "crawl", self.base + "/p/0.html", "--allow-private",
                          "--concurrency", "4", "--max-pages", "1000")

    def resume(self, home: Path) -> list[str]:
        frontier = home / "crawl" / "frontier.sqlite"
        if not frontier.exists() or not _rows(frontier, "SELECT 1 FROM meta WHERE key = 'scope'"):
            return self.start(home)  # killed before the crawl began: it says "give seed URLs"; a user does
        return funnel_cmd(home, "crawl")  # no seeds, no flags: the saved scope and settings

    def result(self, home: Path):
        return store_fingerprint(home / "store.sqlite")


def serve_grid_site():
    """The 150-page site of `tests/crawler/test_crash.py`, served on loopback (a context manager)."""
    from tests.crawler.hostile_site import serve_app
    from tests.crawler.test_crash import grid_site

    return serve_app(grid_site(Counter()))


def delays(fault: Fault, n: int, rng: random.Random) -> list[float]:
    """`n` kill times spread over the uninterrupted run's span (past interpreter start-up)."""
    span = fault.reference_s
    return [span * rng.uniform(0.1, 0.8) for _ in range(n)]

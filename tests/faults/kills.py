"""Fault injection: `kill -9` a real `python -m funnel.cli.main ...` process mid-run, run the same command
again, and compare what is on disk with an uninterrupted run (shared by `tests/faults/` and
`benchmarks/faults.py`).

Each fault is a class with ``prepare`` (inputs, once), ``reference`` (the uninterrupted result, once),
``start`` (a fresh home and the command to kill), ``after_kill`` (what is broken on disk right after the
kill, before anything runs again: a model folder must hold the old model or the new one, whole),
``resume`` (the command run after the kill) and ``compare`` -> (lost, duplicated). `inject` runs one injection: the command is killed ``delay`` seconds
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

    def after_kill(self, home: Path) -> int:
        """Things found broken right after the kill (counted as lost); 0 where nothing can be checked yet."""
        return 0

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
        broken = self.after_kill(home)
        recovery = run(self.resume(home))
        lost, dup = self.compare(ref, self.result(home))
        lost += broken
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


class EmbedFault(Fault):
    """An incremental `funnel embed` (tiny encoder) of the documents ingested since the last embed, killed,
    then run again: the vector index must hold the same doc ids with the same vectors (1e-6) as an
    uninterrupted run, and return the same neighbours for a few probe vectors."""
    name = "embed (funnel embed, incremental)"

    def __init__(self, work: Path, n_docs: int = 1500):
        super().__init__(work)
        self.ingest = IngestFault(work / "in", n_docs=n_docs)
        self.base = work / "embedded"

    def prepare(self) -> None:
        self.ingest.prepare()
        if (self.base / "store.sqlite").exists():
            return
        # the corpus in two datasets: the first fifth, embedded before, and the rest, ingested after it
        lines = (self.ingest.data / "corpus.jsonl").read_text(encoding="utf-8").splitlines()
        cut = len(lines) // 5
        for name, part in (("first", lines[:cut]), ("rest", lines[cut:])):
            folder = self.work / name
            (folder / "qrels").mkdir(parents=True, exist_ok=True)
            (folder / "corpus.jsonl").write_text("\n".join(part) + "\n", encoding="utf-8")
            doc = json.loads(part[0])["_id"]
            (folder / "queries.jsonl").write_text(f'{{"_id": "{name}-q", "text": "w1 w2"}}\n', encoding="utf-8")
            (folder / "qrels" / "test.tsv").write_text(f"query-id\tcorpus-id\tscore\n{name}-q\t{doc}\t1\n",
                                                       encoding="utf-8")
        run(funnel_cmd(self.base, "ingest", "beir", str(self.work / "first"), "--name", "first"))
        run(funnel_cmd(self.base, "embed", "--model", "tiny"))
        run(funnel_cmd(self.base, "ingest", "beir", str(self.work / "rest"), "--name", "rest"))

    def setup_home(self, home: Path) -> None:
        shutil.copytree(self.base, home)

    def start(self, home: Path) -> list[str]:
        return funnel_cmd(home, "embed", "--model", "tiny")

    def result(self, home: Path):
        import numpy as np

        from funnel.index.vectors import VectorIndex

        index = VectorIndex(home / "index" / "dense", backend="exact")
        probes = np.random.default_rng(0).standard_normal((5, index.dim)).astype(np.float32)
        probes /= np.linalg.norm(probes, axis=1, keepdims=True)
        _, rows = index.search(probes, 10)
        return {"vectors": dict(zip(index.doc_ids, index.vectors.copy())),
                "hits": [[index.doc_ids[r] for r in row] for row in rows]}

    def compare(self, ref, got) -> tuple[int, int]:
        import numpy as np

        lost = sum(1 for d, v in ref["vectors"].items()
                   if d not in got["vectors"] or not np.allclose(got["vectors"][d], v, atol=1e-6, rtol=0))
        dup = len(set(got["vectors"]) - set(ref["vectors"]))  # the index keeps one row per doc id
        assert got["hits"] == ref["hits"], "search results differ from an uninterrupted embed"
        return lost, dup


class ModelFault(Fault):
    """`funnel train coarse` over a home whose HOME/models/coarse holds an older model, killed, then run
    again. Right after the kill the folder must hold the old model or the new one, whole (model.txt and
    meta.json of one training run); after the rerun, the model scores like an uninterrupted run's."""
    name = "model publish (funnel train coarse)"
    FILES = ("model.txt", "meta.json")
    OLD = ("--set", "coarse.learning_rate=0.3")  # the older model: other settings, other trees

    def __init__(self, work: Path):
        super().__init__(work)
        self.base = work / "trained"
        self.data = ROOT / "tests" / "data" / "tiny"

    def prepare(self) -> None:
        if (self.base / "models" / "coarse" / "model.txt").exists():
            return
        run(funnel_cmd(self.base, "ingest", "beir", str(self.data), "--name", "tiny"))
        run(funnel_cmd(self.base, "index"))
        run(self.command(self.base, old=True))

    def command(self, home: Path, old: bool = False) -> list[str]:
        return funnel_cmd(home, *(self.OLD if old else ()), "train", "coarse", "--data", str(self.data))

    def setup_home(self, home: Path) -> None:
        shutil.copytree(self.base, home)

    def start(self, home: Path) -> list[str]:
        return self.command(home)

    def model_files(self, home: Path) -> tuple | None:
        """The published model's files (meta.json without its timings), or None if a file is missing."""
        folder = home / "models" / "coarse"
        try:
            model = (folder / "model.txt").read_text(encoding="utf-8")
            meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        meta.pop("seconds", None)
        return model, json.dumps(meta, sort_keys=True)

    def after_kill(self, home: Path) -> int:
        self.reference()
        return 0 if self.model_files(home) in (self.old_files, self.new_files) else 1

    def reference(self):
        if self._ref is None:
            self.prepare()
            self.old_files = self.model_files(self.base)
            super().reference()
            self.new_files = self.model_files(self.work / "reference")
            assert self.old_files != self.new_files, "the older model must differ from the new one"
        return self._ref

    def result(self, home: Path):
        import numpy as np

        from funnel.ranking.serving.coarse import CoarseModel

        model = CoarseModel.load(home / "models" / "coarse")
        X = np.random.default_rng(0).random((200, len(model.features)))
        return model.predict(X)

    def compare(self, ref, got) -> tuple[int, int]:
        import numpy as np

        assert np.array_equal(ref, got), "the rerun's model scores differ from an uninterrupted run's"
        return 0, 0


def kill_at_rename(cmd_args: list[str], n: int, prefix: Path) -> tuple[bool, int]:
    """Run `funnel cmd_args` and SIGKILL it right after its `n`-th rename under `prefix`
    (`tests/faults/killpoint.py`); n = 0 runs it to the end. Returns (killed, renames counted)."""
    cmd = [sys.executable, "-m", "tests.faults.killpoint", str(n), str(prefix), "--", *cmd_args]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if done.returncode == -signal.SIGKILL:
        return True, n
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    counted = [line for line in done.stderr.splitlines() if line.startswith("renames: ")]
    return False, int(counted[-1].split()[1]) if counted else 0


def serve_grid_site():
    """The 150-page site of `tests/crawler/test_crash.py`, served on loopback (a context manager)."""
    from tests.crawler.hostile_site import serve_app
    from tests.crawler.test_crash import grid_site

    return serve_app(grid_site(Counter()))


def delays(fault: Fault, n: int, rng: random.Random) -> list[float]:
    """`n` kill times spread over the uninterrupted run's span (past interpreter start-up)."""
    span = fault.reference_s
    return [span * rng.uniform(0.1, 0.8) for _ in range(n)]

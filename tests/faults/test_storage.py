"""A home that cannot take writes: read-only, or a full disk. `funnel ingest`, `index`, `embed` and
`train coarse` must fail with one `error:` line (no traceback), leave the store, the index, the vector
index and the published model exactly as they were, and the home must still answer searches.

Read-only: folders chmod 0555 for a normal user. Root ignores file modes, so as root the command runs in
a private mount namespace where the home is bind-mounted read-only (`unshare -m`, EROFS); where that is
not allowed either, the read-only cases are skipped. Disk full: the command runs with RLIMIT_FSIZE at
2 KiB (SIGXFSZ ignored), so every write past 2 KiB fails with EFBIG, as a write to a full disk fails
with ENOSPC; this needs no privilege.
"""
from __future__ import annotations

import json
import os
import resource
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.faults.kills import ROOT, funnel_cmd, run, store_fingerprint

pytestmark = pytest.mark.slow
TINY = ROOT / "tests" / "data" / "tiny"
FSIZE_LIMIT = 2048  # bytes: smaller than every file these commands write (segments, vectors, model.txt)
ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


def funnel(home: Path, *args: str) -> list[str]:
    return funnel_cmd(home, "--set", "dense.model=tiny", *args)  # the vector index's encoder, for search and training


def _dataset(folder: Path, prefix: str, n: int = 300) -> Path:
    """A BEIR folder whose doc ids start with `prefix` (ids are unique across datasets), big enough that
    its store pages, index segment arrays and vectors all pass `FSIZE_LIMIT`."""
    (folder / "qrels").mkdir(parents=True)
    with open(folder / "corpus.jsonl", "w", encoding="utf-8") as f:
        for i in range(n):
            f.write(json.dumps({"_id": f"{prefix}{i}", "title": f"{prefix} {i}",
                                "text": f"cell biology note {i} about stem cells and proteins {i * 7}"}) + "\n")
    (folder / "queries.jsonl").write_text(json.dumps({"_id": f"{prefix}q", "text": "stem cells"}) + "\n")
    (folder / "qrels" / "test.tsv").write_text(f"query-id\tcorpus-id\tscore\n{prefix}q\t{prefix}0\t1\n")
    return folder


def build_home(work: Path) -> Path:
    """The tiny corpus ingested, indexed, embedded (tiny encoder) and a coarse model trained; then a second
    dataset ingested but not yet indexed or embedded, so `index` and `embed` have work to do. A third
    dataset, ``work/more``, waits for `ingest`."""
    home = work / "home"
    run(funnel(home, "ingest", "beir", str(TINY), "--name", "tiny"))
    run(funnel(home, "index"))
    run(funnel(home, "embed", "--model", "tiny"))
    run(funnel(home, "train", "coarse", "--data", str(TINY)))
    run(funnel(home, "ingest", "beir", str(_dataset(work / "extra", "x")), "--name", "extra"))
    _dataset(work / "more", "m")
    return home


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    return build_home(tmp_path_factory.mktemp("storage"))


@pytest.fixture(scope="module")
def answers(home) -> str:
    """`funnel search` on the home before any fault: what it must still answer after one."""
    return search_home(home)


def home_state(home: Path) -> dict:
    """Every file of the home except SQLite's shared-memory index, with the store's rows."""
    files = {str(p.relative_to(home)): p.read_bytes() for p in sorted(home.rglob("*"))
             if p.is_file() and not p.name.endswith(("-shm", "-wal", "store.sqlite"))}
    return {"files": files, "store": store_fingerprint(home / "store.sqlite")}


def unchanged(before: dict, after: dict) -> bool:
    """The same rows and files, leftovers aside (``.tmp-*`` folders, a temporary manifest: a later run
    removes or overwrites them)."""
    def published(state):
        return {k: v for k, v in state["files"].items() if not any(part.startswith(".") for part in Path(k).parts)}
    return published(before) == published(after) and before["store"] == after["store"]


def search_home(home: Path) -> str:
    done = subprocess.run(funnel(home, "search", "stem cell proteins", "-k", "5"), cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _root_readonly_works(tmp: Path) -> bool:
    probe = tmp / "probe"
    probe.mkdir(exist_ok=True)
    q = shlex.quote(str(probe))
    done = subprocess.run(["unshare", "-m", "sh", "-c", f"mount --bind {q} {q} && mount -o remount,bind,ro {q} "
                           f"&& ! touch {q}/x"], capture_output=True)
    return done.returncode == 0 and not (probe / "x").exists()


def run_read_only(home: Path, args: list[str], tmp: Path) -> subprocess.CompletedProcess:
    cmd = funnel(home, *args)
    if os.geteuid() != 0:
        dirs = [home, *(p for p in home.rglob("*") if p.is_dir())]
        for d in dirs:
            d.chmod(0o555)
        try:
            return subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
        finally:
            for d in dirs:
                d.chmod(0o755)
    if not shutil.which("unshare") or not _root_readonly_works(tmp):
        pytest.skip("running as root, where chmod does not stop writes, and a read-only bind mount "
                    "(unshare -m) is not allowed here")
    q = shlex.quote(str(home))
    script = f"mount --bind {q} {q} && mount -o remount,bind,ro {q} && exec {shlex.join(cmd)}"
    return subprocess.run(["unshare", "-m", "sh", "-c", script], cwd=ROOT, env=ENV, capture_output=True, text=True,
                          timeout=300)


def _limit_file_size():
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (FSIZE_LIMIT, FSIZE_LIMIT))


def run_disk_full(home: Path, args: list[str], tmp: Path) -> subprocess.CompletedProcess:
    return subprocess.run(funnel(home, *args), cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300,
                          preexec_fn=_limit_file_size)


COMMANDS = {
    "ingest": lambda home: ["ingest", "beir", str(home.parent / "more"), "--name", "more"],
    "index": lambda home: ["index"],
    "embed": lambda home: ["embed", "--model", "tiny"],
    "train": lambda home: ["train", "coarse", "--data", str(TINY)],
}


@pytest.mark.parametrize("fault", ["read-only", "disk-full"])
@pytest.mark.parametrize("command", list(COMMANDS))
def test_unwritable_home_fails_cleanly_and_keeps_serving(home, answers, tmp_path, fault, command):
    h = tmp_path / "home"
    shutil.copytree(home, h)
    shutil.copytree(home.parent / "more", tmp_path / "more")
    before = home_state(h)
    runner = run_read_only if fault == "read-only" else run_disk_full
    done = runner(h, COMMANDS[command](h), tmp_path)
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot write"), done.stderr
    assert "Traceback" not in done.stderr
    assert unchanged(before, home_state(h))
    assert search_home(h) == answers  # still served
    # and once the home takes writes again, the same command succeeds
    run(funnel(h, *COMMANDS[command](h)))


def test_read_only_home_without_wal_files_is_still_searched(home, answers, tmp_path):
    """A store closed cleanly has no -wal/-shm files; SQLite needs -shm to read a WAL database and cannot
    create it in a read-only folder, so every read failed ("unable to open database file"). The store now
    opens immutable there and the home answers as before."""
    import sqlite3

    h = tmp_path / "home"
    shutil.copytree(home, h)
    con = sqlite3.connect(h / "store.sqlite")
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()  # the last connection: SQLite removes -wal and -shm
    assert not list(h.glob("store.sqlite-*"))
    done = run_read_only(h, ["search", "stem cell proteins", "-k", "5"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == answers

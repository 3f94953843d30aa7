"""Recommendation through the front door: `funnel ingest movielens` of a GroupLens-format ml-100k/ folder
written from the synthetic log, `funnel build --task rec` with tiny epochs, `funnel recommend` and
`funnel eval --task rec`; errors print one line and exit 2. The build and one recommend run as real
subprocesses (`python -m funnel.cli.main`); the other calls go through the same `main(argv)` in this
process, which saves the seconds of importing torch and LightGBM in each."""
from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from dataclasses import dataclass

from funnel.core.store import DocumentStore
from funnel.ranking.rec.movielens import ITEM_FLAGS

from .conftest import make_log

ROOT = Path(__file__).resolve().parents[3]
TINY = ["rec.recall_k=20", "rec.coarse_k=10", "rec.max_k=10", "rec.default_k=5", "rec.train_targets=2",
        "rec.threads=1", "rec.device=cpu", "rec.sasrec_epochs=2", "rec.sasrec_dim=16", "rec.sasrec_layers=1",
        "rec.sasrec_max_len=20", "rec.two_tower_epochs=2", "rec.two_tower_dim=16", "rec.two_tower_max_len=10"]


def funnel(*args, home):
    cmd = [sys.executable, "-m", "funnel.cli.main", "-q", "--home", str(home), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # a tiny model gains nothing from more threads
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300, env=env)


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def cli(*args, home) -> Result:
    """`main(argv)` in this process (the CLI without the subprocess)."""
    from funnel.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["-q", "--home", str(home), *args])
    return Result(rc, out.getvalue(), err.getvalue())


def write_grouplens(folder: Path, seed: int = 0) -> tuple:
    """The synthetic log as GroupLens' ml-100k text files (u.data, u.item, u.user)."""
    inter, items, users = make_log(seed)
    folder.mkdir(parents=True)
    (folder / "u.data").write_text("".join(f"{u}\t{i}\t{int(r)}\t{t}\n" for u, i, t, r in inter.itertuples(index=False)))
    lines = []
    for i, title, year, genres in items.itertuples(index=False):
        flags = "|".join("1" if g in genres else "0" for g in ITEM_FLAGS)
        lines.append(f"{i}|{title}|01-Jan-{year}||http://example.org/{i}|{flags}\n")
    (folder / "u.item").write_text("".join(lines), encoding="latin-1")
    (folder / "u.user").write_text("".join(f"{u}|{a}|{g}|{o}|00000\n" for u, a, g, o in users.itertuples(index=False)))
    return inter, items, users


@pytest.fixture(scope="module")
def ml_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("grouplens")
    write_grouplens(root / "ml-100k")
    return root / "ml-100k"


@pytest.fixture(scope="module")
def built_home(tmp_path_factory, ml_dir):
    home = tmp_path_factory.mktemp("home")
    r = cli("ingest", "movielens", str(ml_dir), home=home)
    assert r.returncode == 0, r.stderr
    r = funnel(*[a for s in TINY for a in ("--set", s)], "build", "--task", "rec", home=home)
    assert r.returncode == 0, r.stderr
    return home, r.stdout


def test_ingest_grouplens(ml_dir, tmp_path):
    inter, items, users = make_log(0)
    home = tmp_path / "home"
    for _ in range(2):  # a second ingest replaces the first
        r = cli("ingest", "movielens", str(ml_dir), home=home)
        assert r.returncode == 0, r.stderr
        assert f"items {len(items)}, interactions {len(inter)}, users {len(users)}" in r.stdout
    with DocumentStore(home / "store.sqlite", readonly=True) as store:
        assert store.interaction_datasets() == {"movielens": len(inter)}
        doc = store.get("7")
        assert doc.source == "movielens" and doc.title == "Film 7 (1987)"
        assert doc.meta == {"year": 1987, "genres": ["Action", "Drama"]} and "Genres: Action, Drama" in doc.text
        assert store.users()["1"] == {"age": int(users["age"][0]), "gender": users["gender"][0],
                                      "occupation": users["occupation"][0]}


def test_build_prints_plan_and_publishes(built_home):
    home, out = built_home
    assert "plan (estimates" in out and "step 1/8 ease_itemknn_popularity" in out and "estimated total" in out
    folder = home / "models" / "rec"
    assert (folder / "funnel.json").exists() and not (home / "models" / ".tmp-rec").exists()
    meta = json.loads((folder / "log.json").read_text())
    assert meta["dataset"] == "movielens" and meta["n_items"] == 40 and set(meta["seconds"]) == {"planned", "actual"}
    assert meta["rec_config"]["sasrec_epochs"] == 2
    assert json.loads((folder / "funnel.json").read_text())["config"]["coarse_k"] == 10


def test_recommend(built_home):
    home, _ = built_home
    r = funnel("recommend", "1", "--json", home=home)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["user"] == "1" and len(out["items"]) == 10  # default_k 10, at most the fitted coarse_k (10)
    r = cli("recommend", "--history", "5,6,7", "-k", "3", "--explain", home=home)
    assert r.returncode == 0, r.stderr
    assert "cold-start user (history of 3 given items): 3 items" in r.stdout
    assert "stages:" in r.stdout and "rerank decisions:" in r.stdout and "stage ms:" in r.stdout


def test_eval_rec(built_home):
    home, _ = built_home
    for split in ("dev", "test"):
        r = cli("eval", "--task", "rec", "--split", split, home=home)
        assert r.returncode == 0, r.stderr
        assert "| stage | NDCG@10 | HR@10 | Recall@50 | coverage | diversity | novelty | p50 ms | p95 ms |" in r.stdout
        rows = [line for line in r.stdout.splitlines() if line.startswith("| ") and "NDCG" not in line]
        assert [row.split("|")[1].strip() for row in rows] == ["recall", "coarse", "fine", "rerank"]
        assert f"[{split}]: 60 users" in r.stdout


@pytest.mark.parametrize("args, match", [
    (["recommend", "nobody"], "unknown user 'nobody'"),
    (["recommend", "1", "-k", "11"], r"1..10"),
    (["recommend", "--history", "1,zz"], "unknown item ids ['zz']"),
    (["eval", "--task", "rec", "--split", "train"], "dev or test"),
    (["build", "--task", "rec", "--data", "somewhere"], "not --data"),
])
def test_errors_after_build(built_home, args, match):
    home, _ = built_home
    r = cli(*args, home=home)
    assert r.returncode == 2 and r.stderr.startswith("error: ") and "Traceback" not in r.stderr, r.stderr
    assert match in r.stderr


def test_errors_before_build(tmp_path, ml_dir):
    home = tmp_path / "home"
    r = cli("ingest", "movielens", str(tmp_path / "missing"), home=home)
    assert r.returncode == 2 and "no such file or folder" in r.stderr and "Traceback" not in r.stderr
    assert not (home / "store.sqlite").exists()
    r = cli("recommend", "1", home=home)
    assert r.returncode == 2 and "funnel ingest movielens" in r.stderr
    r = cli("build", home=home)
    assert r.returncode == 2 and "--data" in r.stderr
    assert cli("ingest", "movielens", str(ml_dir), home=home).returncode == 0
    r = cli("recommend", "1", home=home)
    assert r.returncode == 2 and "funnel build --task rec" in r.stderr and "Traceback" not in r.stderr


def test_recipe_and_estimates():
    from funnel.cli.build_rec import REFERENCE_S, estimate_seconds, recipe_from_config
    from funnel.core.config import load_config

    recipe = recipe_from_config(load_config(overrides=TINY))
    assert recipe.sasrec == {"max_epochs": 2, "dim": 16, "n_layers": 1, "max_len": 20, "seed": 0}
    assert recipe.two_tower == {"max_epochs": 2, "dim": 16, "max_len": 10, "seed": 0}
    assert (recipe.funnel.recall_k, recipe.funnel.coarse_k, recipe.funnel.rerank.k) == (20, 10, 10)
    assert recipe.train_targets == 2 and recipe.device == "cpu"
    full = recipe_from_config(load_config())
    # the reference log with the default recipe is the reference; a tenth of it with 2 SASRec epochs is far less
    assert estimate_seconds(100_000, 943, 1682, full) == pytest.approx(REFERENCE_S)
    small = estimate_seconds(10_000, 94, 1682, recipe)
    assert small["sasrec"] == pytest.approx(REFERENCE_S["sasrec"] * 0.1 * 2 / 70)
    assert sum(small.values()) < sum(REFERENCE_S.values()) / 10

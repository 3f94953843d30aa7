"""`funnel build` (funnel/cli/build.py): the plan printed before training, `step N/M` lines, plan vs
actual minutes in HOME/build.json, and a build of the hard corpus shape (tests/data/make_hard_corpus.py)
that finishes within its budget."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "data"))
from make_hard_corpus import make_hard_corpus  # noqa: E402

TINY = ['fine.backbone="tiny"', 'train_dense.backbone="tiny"', "fine.max_length=64", "fine.group_size=3",
        "fine.negatives_depth=10", "coarse.train_depth=30", "coarse.n_estimators=30", "coarse.min_child_samples=5",
        "pipeline.recall_k=30"]


def funnel(*args, home, quiet=True):
    cmd = [sys.executable, "-m", "funnel.cli.main", *(["-q"] if quiet else []), "--home", str(home), *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=900)


def sets(extra=()):
    return [a for s in (*TINY, *extra) for a in ("--set", s)]


def test_hard_corpus_has_the_shape_of_issue_19(tmp_path):
    counts = make_hard_corpus(tmp_path, n_docs=300, n_train=1000, n_dev=50, rows=30_000)
    assert counts["rows"] >= 29_000 and counts["no_hit"] > 0
    grades = [line.split("\t")[2].strip() for line in (tmp_path / "qrels" / "train.tsv").read_text().splitlines()[1:]]
    assert set(grades) == {"0", "1", "2"}
    words = {w for line in (tmp_path / "corpus.jsonl").read_text().splitlines()
             for field in ("title", "text") for w in json.loads(line)[field].split()}
    queries = [json.loads(line)["text"].split() for line in (tmp_path / "queries.jsonl").read_text().splitlines()]
    assert sum(not set(q) & words for q in queries) == counts["no_hit"]  # nothing for BM25 to find


def test_build_prints_its_plan_and_steps_and_records_plan_vs_actual(tiny_dir, tmp_path):
    r = funnel(*sets(), "build", "--data", str(tiny_dir), "--skip", "dense", "--device", "cpu", "--budget-min", "5",
               home=tmp_path / "h", quiet=False)
    assert r.returncode == 0, r.stderr
    log = r.stderr
    plan_at = log.index("build plan (budget 5 min")
    assert "step 1/3 ingest+index" in log and log.index("step 2/3 coarse: planned") > plan_at
    assert "step 3/3 cross-encoder" in log[plan_at:] and "min left" in log
    assert all(line[:2].isdigit() and line[2] == ":" for line in log.splitlines() if " INFO funnel." in line)
    saved = json.loads((tmp_path / "h" / "build.json").read_text())
    assert [row["step"] for row in saved["plan"]] == ["ingest+index", "coarse", "cross-encoder"]
    assert all(row["actual_min"] is not None for row in saved["plan"])
    assert saved["plan"][2]["planned_min"] is not None and "steps of" in saved["plan"][2]["recipe"]
    assert "planned min" in r.stdout  # the table of plan vs actual
    quiet = funnel(*sets(["build.probe_steps=0"]), "build", "--data", str(tiny_dir), "--skip", "dense",
                   "--skip", "cross-encoder", "--device", "cpu", home=tmp_path / "h2")
    assert quiet.returncode == 0 and " INFO " not in quiet.stderr and "step/s" not in quiet.stderr, quiet.stderr


@pytest.mark.slow
def test_build_of_the_hard_shape_finishes_within_its_budget(tmp_path):
    """2,000 train queries, ~100k graded rows, queries with no BM25 hit; tiny models; a 2-minute budget."""
    data = tmp_path / "data"
    make_hard_corpus(data)
    budget = 2.0
    r = funnel(*sets(), "build", "--data", str(data), "--device", "cpu", "--budget-min", str(budget),
               home=tmp_path / "h")
    assert r.returncode == 0, r.stderr
    saved = json.loads((tmp_path / "h" / "build.json").read_text())
    assert float(saved["report"]["total"].split()[0]) <= budget * 60
    assert {row["step"] for row in saved["plan"]} == {"ingest+index", "embed documents", "dual-encoder",
                                                      "fold encoders", "coarse", "cross-encoder"}
    recipe = {row["step"]: row["recipe"] for row in saved["plan"]}
    assert "positives/query/epoch" in recipe["cross-encoder"]  # pairs sampled per query, not hours of steps
    ce = json.loads((tmp_path / "h" / "models" / "cross-encoder" / "funnel_meta.json").read_text())["training"]
    assert ce["train_queries"] > 1000 and "beats_bm25" in ce
    r = funnel("search", "anything at all", home=tmp_path / "h")
    assert r.returncode == 0, r.stderr

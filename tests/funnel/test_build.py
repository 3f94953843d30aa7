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
    assert "step 1/4 ingest+index" in log and log.index("step 2/4 coarse: planned") > plan_at
    assert "step 3/4 cross-encoder" in log[plan_at:] and "step 4/4 fusion" in log[plan_at:] and "min left" in log
    assert "fitting on train:fit judgements, selecting (early stopping, best epoch) on train:select" in log
    assert all(line[:2].isdigit() and line[2] == ":" for line in log.splitlines() if " INFO funnel." in line)
    saved = json.loads((tmp_path / "h" / "build.json").read_text())
    assert [row["step"] for row in saved["plan"]] == ["ingest+index", "coarse", "cross-encoder", "fusion"]
    assert all(row["actual_min"] is not None for row in saved["plan"])
    assert saved["plan"][2]["planned_min"] is not None and "steps of" in saved["plan"][2]["recipe"]
    assert "planned min" in r.stdout  # the table of plan vs actual
    # the fusion weight was chosen on the held-out training queries, and the pipeline serves with it
    fusion = json.loads((tmp_path / "h" / "models" / "fusion.json").read_text())
    assert fusion["split"] == "train:select" and fusion["fine_weight"] in {float(w) for w in fusion["sweep"]}
    assert max(fusion["sweep"].values()) == fusion["sweep"][str(fusion["fine_weight"])]
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
                                                      "fold encoders", "coarse", "cross-encoder", "fusion"}
    recipe = {row["step"]: row["recipe"] for row in saved["plan"]}
    assert "positives/query/epoch" in recipe["cross-encoder"]  # pairs sampled per query, not hours of steps
    ce = json.loads((tmp_path / "h" / "models" / "cross-encoder" / "funnel_meta.json").read_text())["training"]
    assert ce["train_queries"] > 1000 and "beats_bm25" in ce
    r = funnel("search", "anything at all", home=tmp_path / "h")
    assert r.returncode == 0, r.stderr


@pytest.mark.slow
def test_build_resumes_skipping_steps_whose_inputs_did_not_change(tiny_dir, tmp_path):
    """Second run skips every step; a changed config key reruns the steps that read it; a failing step
    leaves the published models in place and the next run resumes from it; --force reruns everything."""
    home = tmp_path / "h"
    models = home / "models"
    args = ["build", "--data", str(tiny_dir), "--skip", "dense", "--device", "cpu"]

    def run(*extra, ok=True):
        r = funnel(*sets(["build.probe_steps=0", *extra]), *args, home=home, quiet=False)
        assert (r.returncode == 0) == ok, r.stderr
        return r, json.loads((home / "build.json").read_text())

    def ran(saved):
        return [row["step"] for row in saved["plan"]]

    def stamps():
        return {m: (models / m / f).stat().st_mtime_ns
                for m, f in (("coarse", "model.txt"), ("cross-encoder", "model.safetensors"))}

    _, saved = run()
    assert ran(saved) == ["ingest+index", "coarse", "cross-encoder", "fusion"] and saved["format"] == 2
    assert set(saved["steps"]) == {"ingest+index", "coarse", "cross-encoder", "fusion"}
    first = stamps()

    r, saved = run()
    assert ran(saved) == [] and stamps() == first
    assert all("unchanged" in saved["report"][s] for s in ("ingest+index", "coarse", "cross-encoder", "fusion"))
    assert "build plan" not in r.stderr  # nothing to train: no probes, no plan

    # only the coarse ranker reads coarse.*; the fusion weight is chosen again for the new coarse scores
    _, saved = run("coarse.n_estimators=20")
    assert ran(saved) == ["coarse", "fusion"] and stamps()["cross-encoder"] == first["cross-encoder"]
    coarse_now = stamps()["coarse"]

    # bm25.* feeds both rankers: coarse reruns, then the cross-encoder fails (a backbone that is not there)
    _, saved = run("coarse.n_estimators=20", "bm25.k1=1.0", 'fine.backbone="/nonexistent/backbone"', ok=False)
    assert "cross-encoder" not in saved["steps"] and "coarse" in saved["steps"]
    after_fail = stamps()
    assert after_fail["coarse"] != coarse_now and after_fail["cross-encoder"] == first["cross-encoder"]
    assert not [p for p in models.iterdir() if p.name.startswith(".old")]  # the old model was never moved aside
    _, saved = run("coarse.n_estimators=20", "bm25.k1=1.0")  # resumes from the step that failed
    assert ran(saved) == ["cross-encoder", "fusion"] and stamps()["coarse"] == after_fail["coarse"]
    assert stamps()["cross-encoder"] != first["cross-encoder"]

    # --force reruns the steps asked for, unchanged or not
    r = funnel(*sets(["build.probe_steps=0", "coarse.n_estimators=20", "bm25.k1=1.0"]), *args, "--skip", "coarse",
               "--skip", "cross-encoder", "--force", home=home)
    assert r.returncode == 0, r.stderr
    assert ran(json.loads((home / "build.json").read_text())) == ["ingest+index"]


def test_step_fingerprints_follow_their_data_files_and_config_sections(tiny_dir, tmp_path):
    import shutil
    from dataclasses import replace

    from funnel.cli.build import step_inputs
    from funnel.core.config import Config

    data = tmp_path / "data"
    shutil.copytree(tiny_dir, data)
    config = Config()
    before = {n: step_inputs(n, config, data, ("train", "dev"), "query") for n in ("ingest+index", "coarse", "cross-encoder")}
    again = {n: step_inputs(n, config, data, ("train", "dev"), "query") for n in before}
    assert again == before
    tuned = replace(config, coarse=replace(config.coarse, n_estimators=7))
    assert step_inputs("coarse", tuned, data, ("train", "dev"), "query") != before["coarse"]
    assert step_inputs("cross-encoder", tuned, data, ("train", "dev"), "query") == before["cross-encoder"]
    with open(data / "qrels" / "train.tsv", "a", encoding="utf-8") as f:  # one judgement more
        f.write("\n")
    after = {n: step_inputs(n, config, data, ("train", "dev"), "query") for n in before}
    assert all(after[n] != before[n] for n in before)  # ingest loads every split; both rankers train on it

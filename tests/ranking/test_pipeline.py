"""funnel.ranking.serving.pipeline end to end on the tiny corpus: stages from config, traces and explain, per-stage
evaluation, profiles, and the CLI (`funnel search --explain`, `funnel eval --profile`, `funnel build`)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from funnel.core.judgements import read_qrels, read_queries
from funnel.core.config import CoarseConfig, Config, FineConfig, PathsConfig, PipelineConfig
from funnel.core.errors import FunnelError
from funnel.ranking.serving.pipeline import Pipeline, cascade_runs, evaluate_pipeline, explain, timings
from funnel.ranking.serving.stages import Candidates, StageTrace

ROOT = Path(__file__).resolve().parents[2]
SETS = ["coarse.train_depth=30", "coarse.n_estimators=30", "coarse.min_child_samples=5", 'fine.backbone="tiny"',
        "fine.max_length=64", "fine.group_size=3", "fine.negatives_depth=10", "fine.epochs=1"]


def small_config(home) -> Config:
    return Config(paths=PathsConfig(home=str(home)),
                  coarse=replace(CoarseConfig(), train_depth=30, n_estimators=30, min_child_samples=5),
                  fine=replace(FineConfig(), backbone="tiny", max_length=64, group_size=3, negatives_depth=10),
                  pipeline=replace(PipelineConfig(), recall_k=40, coarse_k=15, cpu_fine_k=8, gpu_fine_k=12))


@pytest.fixture(scope="module")
def trained_home(tiny_home, tiny_dir, tmp_path_factory):
    """The tiny home plus a coarse model and a tiny cross-encoder, as `funnel build` would leave it."""
    from funnel.ranking.training.train_coarse import train_coarse
    from funnel.ranking.training.train_cross import train_cross_encoder

    home = tmp_path_factory.mktemp("funnel") / "home"
    shutil.copytree(tiny_home, home)
    config = small_config(home)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train_coarse(config, tiny_dir, progress=False)
        train_cross_encoder(config, tiny_dir, device="cpu", progress=False)
    finally:
        torch.set_num_threads(threads)
    return home


def test_pipeline_runs_every_stage_with_its_candidate_count(trained_home):
    pipe = Pipeline.from_config(small_config(trained_home), "cpu")
    try:
        assert pipe.stage_names == ["bm25", "coarse", "fine", "rerank"]
        res = pipe.search("breast cancer environmental factors", 5)
    finally:
        pipe.close()
    assert [t.stage for t in res.trace] == pipe.stage_names
    sizes = [len(t.doc_ids) for t in res.trace]
    # fine rescores its depth (8) and passes the rest through up to the final k (10): never fewer results
    assert sizes[0] <= 40 and sizes[1] == 15 and sizes[2] == 10 and sizes[3] == len(res) == 5
    for t in res.trace:
        assert t.ms >= 0 and len(t.scores) == len(t.doc_ids)
        assert np.all(np.diff(t.scores) <= 1e-6)  # each stage's list is best first
    for earlier, later in zip(res.trace, res.trace[1:]):
        assert set(later.doc_ids) <= set(earlier.doc_ids)  # a funnel only narrows
    assert set(timings(res)) == set(pipe.stage_names)


def test_explain_reports_rank_and_score_at_each_stage(trained_home):
    pipe = Pipeline.from_config(small_config(trained_home), "cpu")
    try:
        res = pipe.search("vitamin d fracture", 4)
    finally:
        pipe.close()
    rows = explain(res)
    assert [r["doc_id"] for r in rows] == res.doc_ids
    for row in rows:
        for trace in res.trace:
            got = row["stages"][trace.stage]
            i = trace.doc_ids.index(row["doc_id"])
            assert got["rank"] == i + 1 and got["score"] == pytest.approx(float(trace.scores[i]), abs=1e-4)
        assert row["stages"]["rerank"]["rank"] == row["rank"]


def test_untrained_stages_are_skipped_and_bad_settings_refused(tiny_home):
    pipe = Pipeline.from_config(small_config(tiny_home), "cpu")
    assert pipe.stage_names == ["bm25", "rerank"]
    assert len(pipe.search("cancer", 3)) == 3
    pipe.close()
    with pytest.raises(FunnelError, match="profile"):
        Pipeline.from_config(small_config(tiny_home), "tpu")
    with pytest.raises(FunnelError, match="stage"):
        Pipeline.from_config(small_config(tiny_home), "cpu", stages=["recall", "magic"])


def test_the_build_s_fusion_choice_can_leave_the_fine_stage_out_of_the_cpu_profile(trained_home, tmp_path):
    """fusion.json with cpu_fine false: the cpu profile runs without the cross-encoder, the gpu profile
    keeps it, and a fine_weight set in the config brings it back."""
    import json
    from dataclasses import replace

    home = tmp_path / "home"
    shutil.copytree(trained_home, home)
    config = small_config(home)
    config.paths.fusion.write_text(json.dumps({"format_version": 1, "fine_weight": 8.0, "cpu_fine": False}))
    names = {}
    for profile, cfg in (("cpu", config), ("gpu", config),
                         ("cpu set", replace(config, pipeline=replace(config.pipeline, fine_weight=8.0)))):
        pipe = Pipeline.from_config(cfg, profile.split()[0])
        names[profile] = pipe.stage_names
        pipe.close()
    assert names == {"cpu": ["bm25", "coarse", "rerank"], "gpu": ["bm25", "coarse", "fine", "rerank"],
                     "cpu set": ["bm25", "coarse", "fine", "rerank"]}


def test_gpu_profile_uses_its_depth_and_falls_back_to_cpu(trained_home):
    pipe = Pipeline.from_config(small_config(trained_home), "gpu")
    try:
        fine = dict((s.name, s) for s, _ in pipe.stages)["fine"]
        assert fine.depth == 12
        if not torch.cuda.is_available():
            assert fine.encoder.device.type == "cpu" and fine.encoder.dtype == torch.float32
        res = pipe.search("cancer risk of cells in patients and disease", 10)
        assert len(res.trace[0].doc_ids) > 12 and len(res.trace[2].doc_ids) == 12
    finally:
        pipe.close()


def test_cascade_runs_fill_a_short_stage_from_the_earlier_ones():
    c = Candidates.empty()
    c.trace = [StageTrace("bm25", ["a", "b", "c", "d"], np.zeros(4), 1.0),
               StageTrace("fine", ["c", "a"], np.zeros(2), 1.0)]
    assert cascade_runs(c) == {"bm25": ["a", "b", "c", "d"], "fine": ["c", "a", "b", "d"]}


def test_evaluate_pipeline_reports_each_stage(trained_home, tiny_dir):
    pipe = Pipeline.from_config(small_config(trained_home), "cpu")
    try:
        out = evaluate_pipeline(pipe, read_queries(tiny_dir), read_qrels(tiny_dir, "dev"), k=20, progress=False)
    finally:
        pipe.close()
    assert [r["stage"] for r in out["stages"]] == ["bm25", "coarse", "fine", "rerank"]
    assert out["queries"] == len(read_qrels(tiny_dir, "dev"))
    for r in out["stages"]:
        assert 0 <= r["nDCG@10"] <= 1 and 0 <= r["Recall@100"] <= 1 and 0 <= r["p50_ms"] <= r["p95_ms"]
    # The recall stage's figure is BM25's own (same run, same metric code).
    from funnel.ranking.evaluate import evaluate
    from funnel.index.searcher import Bm25Retriever

    r = Bm25Retriever.open(trained_home / "index")
    queries, qrels = read_queries(tiny_dir), read_qrels(tiny_dir, "dev")
    bm25_run = {q: dict(zip(h.doc_ids, h.scores.tolist())) for q in qrels for h in [r.search(queries[q], 20)]}
    assert out["stages"][0]["nDCG@10"] == pytest.approx(evaluate(bm25_run, qrels)["nDCG@10"], abs=1e-9)


def funnel(*args, home):
    cmd = [sys.executable, "-m", "funnel.cli.main", "-q", "--home", str(home)] + list(args)
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)


def test_cli_search_explain_and_eval_profile(trained_home, tiny_dir):
    sets = [a for s in ["pipeline.recall_k=40", "pipeline.coarse_k=15", "pipeline.cpu_fine_k=8"] for a in ("--set", s)]
    r = funnel(*sets, "search", "breast cancer", "-k", "3", "--explain", "--json", home=trained_home)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [row["rank"] for row in rows] == [1, 2, 3]
    assert list(rows[0]["stages"]) == ["bm25", "coarse", "fine", "rerank"]
    r = funnel(*sets, "search", "breast cancer", "--explain", home=trained_home)
    assert r.returncode == 0 and "stage ms:" in r.stdout and "coarse: #" in r.stdout, r.stderr
    r = funnel(*sets, "eval", "--data", str(tiny_dir), "--split", "dev", "--profile", "cpu", home=trained_home)
    assert r.returncode == 0, r.stderr
    assert "| fine |" in r.stdout and "p95_ms" in r.stdout and (trained_home / "runs" / "funnel-cpu-dev.trec").exists()
    r = funnel("search", "cancer", "--profile", "cpu", "-k", "0", home=trained_home)
    assert r.returncode == 2 and r.stderr.startswith("error: ")


def test_cli_build_trains_and_publishes_every_model(tiny_dir, tmp_path):
    sets = [a for s in SETS for a in ("--set", s)]
    r = funnel(*sets, "build", "--data", str(tiny_dir), "--skip", "dense", "--device", "cpu", home=tmp_path / "h")
    assert r.returncode == 0, r.stderr
    models = tmp_path / "h" / "models"
    assert (models / "coarse" / "model.txt").exists() and (models / "cross-encoder" / "model.safetensors").exists()
    assert not [p for p in models.iterdir() if p.name.startswith(".")]  # nothing half-published left behind
    # the cpu profile runs the cross-encoder where the build found it beats the coarse ranker on held-out queries
    cpu_fine = json.loads((models / "fusion.json").read_text())["cpu_fine"]
    r = funnel("search", "breast cancer", "--explain", "--json", home=tmp_path / "h")
    assert r.returncode == 0 and ("fine" in json.loads(r.stdout.splitlines()[0])["stages"]) == cpu_fine, r.stderr
    r = funnel("--set", "pipeline.fine_weight=8", "search", "breast cancer", "--explain", "--json", home=tmp_path / "h")
    assert r.returncode == 0 and "fine" in json.loads(r.stdout.splitlines()[0])["stages"], r.stderr
    r = funnel("build", "--data", str(tmp_path / "nowhere"), home=tmp_path / "h2")
    assert r.returncode == 2 and "qrels" in r.stderr


def test_cli_build_dense_on_a_cpu_encodes_the_documents_once(tiny_dir, tmp_path):
    """The CPU recipe (auto towers = the query tower alone): the frozen document side is embedded before
    training, and the published vector index still matches the trained model's document tower."""
    from funnel.ranking.models.dual_encoder import load_dual_encoder, tower_fingerprint

    sets = [a for s in (*SETS, 'train_dense.backbone="tiny"', "train_dense.epochs=1") for a in ("--set", s)]
    home = tmp_path / "h"
    r = funnel(*sets, "build", "--data", str(tiny_dir), "--skip", "coarse", "--skip", "cross-encoder",
               "--device", "cpu", home=home)
    assert r.returncode == 0, r.stderr
    manifest = json.loads((home / "index" / "dense" / "manifest.json").read_text())
    model = load_dual_encoder(home / "models" / "dual-encoder", "cpu")
    assert manifest["generation"] == 1 and manifest["count"] == 50  # embedded once, before training
    assert manifest["meta"]["doc_hash"] == tower_fingerprint(model.doc_tower)
    r = funnel("search", "breast cancer", "--explain", "--json", home=home)
    assert r.returncode == 0 and "hybrid" in json.loads(r.stdout.splitlines()[0])["stages"], r.stderr  # dense in use


def test_fine_model_is_chosen_by_configuration(trained_home, tmp_path):
    """`fine.model` serves another cross-encoder folder (e.g. a pruned one) without moving files."""
    other = tmp_path / "elsewhere" / "ce"
    shutil.copytree(trained_home / "models" / "cross-encoder", other)
    home = tmp_path / "home"
    shutil.copytree(trained_home, home)
    shutil.rmtree(home / "models" / "cross-encoder")
    config = small_config(home)
    pipe = Pipeline.from_config(config, "cpu")
    try:
        assert "fine" not in pipe.stage_names
    finally:
        pipe.close()
    pipe = Pipeline.from_config(replace(config, fine=replace(config.fine, model=str(other))), "cpu")
    try:
        assert pipe.stage_names == ["bm25", "coarse", "fine", "rerank"]
    finally:
        pipe.close()


def test_a_query_without_candidates_passes_every_stage(trained_home):
    """Nothing matches: every stage (coarse, fine, rerank) gets and returns empty candidates."""
    pipe = Pipeline.from_config(small_config(trained_home), "cpu")
    try:
        res = pipe.search("xyzzyq plughw", 5)
        out = evaluate_pipeline(pipe, {"q": "xyzzyq plughw"}, {"q": {"doc": 1}}, k=10, progress=False)
    finally:
        pipe.close()
    assert len(res.doc_ids) == 0 and [t.stage for t in res.trace] == pipe.stage_names
    assert all(row["nDCG@10"] == 0.0 for row in out["stages"])

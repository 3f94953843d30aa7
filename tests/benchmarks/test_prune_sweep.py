"""benchmarks/prune_sweep.py on the tiny corpus with a tiny random cross-encoder: every variant is
pruned from the same teacher, tabulated, and saved as a model the serving side loads."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[2]


def test_sweep_tabulates_and_saves_every_variant(tiny_home, tiny_dir, tmp_path):
    from transformers import BertForSequenceClassification

    from funnel.ranking.models import heads as H
    from funnel.ranking.models.backbone import load_tokenizer, tiny_config
    from funnel.ranking.models.cross_encoder import load_cross_encoder, save_cross_encoder

    torch.manual_seed(0)
    teacher = tmp_path / "teacher"
    save_cross_encoder(BertForSequenceClassification(tiny_config(num_labels=1)), load_tokenizer("tiny"), teacher,
                       {"max_length": 64})
    out = tmp_path / "sweep.md"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "prune_sweep.py"), "--home", str(tiny_home), "--data",
           str(tiny_dir), "--teacher", str(teacher), "--set", "prune.depth=8", "--set", "prune.recover_group_size=4",
           "--variant", "half:target=0.5,steps=1,recover_steps=2",
           "--variant", "half-ffn-hidden:target=0.5,ffn_target=0.5,steps=2,recover_steps=2,distill_hidden=1.0",
           "--save-dir", str(tmp_path / "models"), "--device", "cpu", "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    table = out.read_text()
    assert "| half | target=0.5, steps=1, recover_steps=2 | 4 | 64/64 |" in table
    assert "| half-ffn-hidden |" in table and "distill_hidden=1.0" in table
    model = load_cross_encoder(tmp_path / "models" / "half-ffn-hidden", "cpu").model
    assert sum(H.heads_per_layer(model)) == 4 and H.ffn_sizes(model) == [32, 32]

    bad = subprocess.run(cmd[:-2] + ["--variant", "x:targett=0.5", "--out", str(out)], capture_output=True, text=True)
    assert bad.returncode == 2 and "prune.targett is not a pruning setting" in bad.stderr

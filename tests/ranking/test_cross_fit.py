"""funnel.ranking.training.cross_fit: out-of-fold dual encoders, so that the coarse ranker's training lists never see a
dense score from an encoder trained on the same query (the stacking leak)."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest

from funnel.core.judgements import read_qrels
from funnel.core.config import load_config
from funnel.core.errors import InputError
from funnel.ranking.training.cross_fit import assign_folds, read_folds, train_fold_encoders


def test_folds_partition_the_queries_evenly_and_reproducibly():
    qids = [f"q{i}" for i in range(23)]
    folds = assign_folds(qids, 4, seed=3)
    assert sorted(folds) == sorted(qids) and set(folds.values()) == {0, 1, 2, 3}
    sizes = [list(folds.values()).count(k) for k in range(4)]
    assert max(sizes) - min(sizes) <= 1
    assert assign_folds(list(reversed(qids)), 4, seed=3) == folds  # input order does not matter
    assert assign_folds(qids, 4, seed=4) != folds
    with pytest.raises(InputError, match="2 folds"):
        assign_folds(qids, 1)


def _config(home, **coarse):
    c = load_config(None, [f"paths.home={json.dumps(str(home))}"])
    return replace(c, dense=replace(c.dense, model="tiny"), train_dense=replace(c.train_dense, backbone="tiny", batch_size=6, epochs=1, hard_negatives=1,
                                          query_max_len=32, doc_max_len=64),
                   coarse=replace(c.coarse, train_depth=30, n_estimators=30, early_stopping=10, min_child_samples=5,
                                  **coarse))


def test_each_fold_trains_without_its_own_queries_and_the_coarse_ranker_uses_them(tiny_home_copy, tiny_dir):
    from funnel.ranking.models.dual_encoder import embed_store
    from funnel.ranking.training.train_coarse import train_coarse

    config = _config(tiny_home_copy, cross_fit=2)
    embed_store(config, "tiny", progress=False)  # the frozen document side every fold shares
    out = train_coarse(config, tiny_dir, tiny_home_copy / "models" / "coarse", progress=False)
    assert json.loads((out / "meta.json").read_text())["cross_fit"] is False  # no folds yet: plain lists

    folder = train_fold_encoders(config, tiny_dir, 2, progress=False, device="cpu")
    fold_of, paths = read_folds(folder)
    assert folder == tiny_home_copy / "models" / "dual-encoder-folds" and [p.name for p in paths] == ["fold-0", "fold-1"]
    train = read_qrels(tiny_dir, "train")
    pairs = {q: sum(g > 0 for g in j.values()) for q, j in train.items()}
    assert set(fold_of) == {q for q, n in pairs.items() if n}
    for i, p in enumerate(paths):
        summary = json.loads((p / "train_log.jsonl").read_text().splitlines()[-1])
        # trained on the (query, positive) pairs of the other fold only
        assert summary["examples"] == sum(n for q, n in pairs.items() if fold_of.get(q, -1) != i and q in fold_of)
        assert json.loads((p / "dual_encoder.json").read_text())["towers"] == "query"

    out = train_coarse(config, tiny_dir, tiny_home_copy / "models" / "coarse", progress=False)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["cross_fit"] is True and meta["train_lists"] > 0 and meta["recall"] == "HybridRecall"
    (paths[1] / "dual_encoder.json").unlink()
    with pytest.raises(InputError, match="fold-1"):
        read_folds(folder)

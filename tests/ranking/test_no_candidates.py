"""Queries with no candidates at every stage: training lists, dev checks, serving. On a new corpus
short keyword queries often match nothing in BM25; one such dev query used to kill `funnel build`
(`torch.cat(): expected a non-empty list of Tensors` in `rerank_sets.score_pairs`)."""
from __future__ import annotations

import json
import shutil
from dataclasses import replace

import pytest

from funnel.core.config import CoarseConfig, Config, FineConfig, PathsConfig
from funnel.ranking.models.backbone import load_tokenizer
from funnel.ranking.models.cross_encoder import build_cross_encoder
from funnel.ranking.training.rerank_sets import evaluate_rerank, load_rerank_sets, score_pairs

NO_HIT = "xyzzyq plughw"  # no term of it is in the tiny corpus


@pytest.fixture(scope="module")
def no_hit_dir(tiny_dir, tmp_path_factory):
    """The tiny corpus plus one train and one dev query that BM25 finds nothing for (each judged)."""
    out = tmp_path_factory.mktemp("nohit") / "data"
    shutil.copytree(tiny_dir, out)
    with open(out / "queries.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps({"_id": "nohit-train", "text": NO_HIT}) + "\n")
        f.write(json.dumps({"_id": "nohit-dev", "text": NO_HIT + " frobz"}) + "\n")
    doc = json.loads((tiny_dir / "corpus.jsonl").read_text().splitlines()[0])["_id"]
    for split in ("train", "dev"):
        with open(out / "qrels" / f"{split}.tsv", "a", encoding="utf-8") as f:
            f.write(f"nohit-{split}\t{doc}\t1\n")
    return out


def test_score_pairs_of_no_documents_is_empty():
    model = build_cross_encoder("tiny", seed=0).eval()
    scores = score_pairs(model, load_tokenizer("tiny"), NO_HIT, [], 32)
    assert scores.shape == (0,)


def test_dev_check_counts_a_query_without_candidates_as_zero(tiny_home, no_hit_dir):
    from funnel.core.judgements import read_qrels

    config = Config(paths=PathsConfig(home=str(tiny_home)))
    sets = load_rerank_sets(config, no_hit_dir, "dev", 8)
    assert [s for s in sets if s.qid == "nohit-dev"][0].doc_ids == []
    model = build_cross_encoder("tiny", seed=0)
    qrels = read_qrels(no_hit_dir, "dev")
    with_empty = evaluate_rerank(model, load_tokenizer("tiny"), sets, 64, qrels)["nDCG@10"]
    without = evaluate_rerank(model, load_tokenizer("tiny"), [s for s in sets if s.doc_ids], 64,
                              {q: j for q, j in qrels.items() if q != "nohit-dev"})["nDCG@10"]
    n = len(sets)
    assert with_empty == pytest.approx(without * (n - 1) / n, abs=1e-6)  # the empty query scores 0, not a crash


def test_cross_encoder_training_survives_queries_without_candidates(tiny_home, no_hit_dir, tmp_path, one_thread):
    from funnel.ranking.training.train_cross import train_cross_encoder

    config = Config(paths=PathsConfig(home=str(tiny_home)),
                    fine=replace(FineConfig(), backbone="tiny", max_length=64, group_size=3, negatives_depth=10,
                                 batch_queries=4, epochs=1, eval_depth=8))
    out = train_cross_encoder(config, no_hit_dir, tmp_path / "ce", device="cpu", progress=False)
    meta = json.loads((out / "funnel_meta.json").read_text())
    assert meta["epoch"] == 1 and "nDCG@10" in meta["dev"]


def test_coarse_training_survives_queries_without_candidates(tiny_home, no_hit_dir, tmp_path):
    from funnel.ranking.training.train_coarse import train_coarse

    config = Config(paths=PathsConfig(home=str(tiny_home)),
                    coarse=replace(CoarseConfig(), train_depth=30, n_estimators=10, min_child_samples=5))
    out = train_coarse(config, no_hit_dir, tmp_path / "coarse", progress=False)
    assert (out / "model.txt").exists()

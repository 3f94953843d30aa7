"""funnel.ranking.models.cross_encoder and funnel.ranking.training.train_cross: the listwise loss, negatives that never hold a judged
document, the one loader round-trip, batching and truncation, and a tiny model that learns."""
from __future__ import annotations

import json
import math
import random
from dataclasses import replace

import numpy as np
import pytest
import torch

from funnel.core.config import Config, FineConfig, PathsConfig
from funnel.core.errors import InputError
from funnel.ranking.models.backbone import load_tokenizer
from funnel.ranking.models.cross_encoder import build_cross_encoder, load_cross_encoder, save_cross_encoder
from funnel.ranking.serving.fine import CrossEncoderReranker
from funnel.ranking.serving.stages import Candidates, Request
from funnel.ranking.training.train_cross import listwise_loss, make_groups, mine_negatives, train_cross_encoder

DOCS = ["Tumour necrosis factor signalling in zebrafish granulomas.",
        "Breast cancer risk and environmental exposure in a cohort of nurses " * 8,
        "Short.", "Vitamin D supplementation and fracture risk in older adults."]


def test_listwise_loss_is_softmax_cross_entropy_with_the_positive_first():
    assert float(listwise_loss(torch.zeros(8), 4)) == pytest.approx(math.log(4))  # 2 groups, all tied
    logits = torch.tensor([10.0, 0, 0, 0, 0, 10, 0, 0], requires_grad=True)
    loss = listwise_loss(logits, 4)
    want = (math.log(1 + 3 * math.exp(-10)) + math.log(3 + math.exp(10)) - 0) / 2
    assert float(loss.detach()) == pytest.approx(want, rel=1e-5)
    loss.backward()
    assert logits.grad[0] < 0 < logits.grad[5]  # raise each positive, lower the wrongly top negative


def test_negatives_never_hold_a_judged_document(tiny_home, tiny_dir):
    from funnel.core.judgements import read_qrels, read_queries
    from funnel.index.searcher import Bm25Retriever

    qrels, queries = read_qrels(tiny_dir, "train"), read_queries(tiny_dir)
    negs = mine_negatives(Bm25Retriever.open(tiny_home / "index"), queries, qrels, 10)
    groups = make_groups(qrels, negs, 4, random.Random(0))
    assert groups and all(len(ds) == 4 and len(set(ds)) == 4 for _, ds in groups)
    for qid, ds in groups:
        assert qrels[qid][ds[0]] > 0
        assert not set(ds[1:]) & set(qrels[qid])


@pytest.fixture(scope="module")
def tiny_ce(tmp_path_factory):
    model = build_cross_encoder("tiny", seed=1)
    out = save_cross_encoder(model, load_tokenizer("tiny"), tmp_path_factory.mktemp("ce"), {"max_length": 48})
    return model.eval(), out


def test_save_and_load_round_trip(tiny_ce):
    model, path = tiny_ce
    assert (path / "model.safetensors").exists() and not list(path.glob("*.bin")) and not list(path.glob("*.pkl"))
    ce = load_cross_encoder(path, "cpu")
    assert ce.max_length == 48 and ce.model.config.num_labels == 1 and ce.device.type == "cpu"
    enc = ce.tokenizer(["vitamin d"] * len(DOCS), DOCS, truncation="only_second", max_length=48, padding=True,
                       return_tensors="pt")
    with torch.inference_mode():
        want = model(**enc).logits[:, 0].numpy()
    np.testing.assert_allclose(ce.score("vitamin d", DOCS), want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_pooling_is_recorded_and_loaded_back(tmp_path, pooling):
    model = build_cross_encoder("tiny", seed=2, pooling=pooling).eval()
    path = save_cross_encoder(model, load_tokenizer("tiny"), tmp_path / pooling, {"max_length": 48})
    assert json.loads((path / "config.json").read_text())["funnel_pooling"] == pooling
    ce = load_cross_encoder(path, "cpu")
    assert ce.model.config.funnel_pooling == pooling
    enc = ce.tokenizer(["fracture"] * 2, DOCS[:2], truncation="only_second", max_length=48, padding=True,
                       return_tensors="pt")
    with torch.inference_mode():
        np.testing.assert_allclose(ce.model(**enc).logits.numpy(), model(**enc).logits.numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(InputError, match="fine.pooling"):
        build_cross_encoder("tiny", pooling="max")


def test_mean_pooling_ignores_padding(tiny_ce):
    """A pair padded inside a batch of longer pairs gets the score it gets alone (the mask excludes pads)."""
    model = tiny_ce[0]
    tok = load_tokenizer("tiny")
    alone = tok(["tnf"], [DOCS[2]], return_tensors="pt")
    padded = tok(["tnf", "tnf"], [DOCS[2], DOCS[1]], truncation="only_second", max_length=48, padding=True,
                 return_tensors="pt")
    assert padded["attention_mask"][0].sum() < padded["attention_mask"].shape[1]  # really padded
    with torch.inference_mode():
        a, b = float(model(**alone).logits[0, 0]), float(model(**padded).logits[0, 0])
    assert a == pytest.approx(b, abs=1e-5)


def test_scores_do_not_depend_on_batching_or_order(tiny_ce):
    ce = load_cross_encoder(tiny_ce[1], "cpu")
    full = ce.score("breast cancer", DOCS, batch_size=16)
    np.testing.assert_allclose(ce.score("breast cancer", DOCS, batch_size=1), full, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ce.score("breast cancer", DOCS[::-1], batch_size=3)[::-1], full, rtol=1e-4, atol=1e-5)
    assert ce.score("q", []).shape == (0,)


def test_max_length_truncates_the_document(tiny_ce):
    ce = load_cross_encoder(tiny_ce[1], "cpu", max_length=16)
    head = "granulomas form in zebrafish " * 5
    a, b = ce.score("tnf", [head, head + " completely different words follow here " * 10])
    assert a == pytest.approx(b, abs=1e-6)  # everything past 16 tokens is cut
    long = load_cross_encoder(tiny_ce[1], "cpu", max_length=256)
    a, b = long.score("tnf", [head, head + " completely different words follow here " * 10])
    assert a != pytest.approx(b, abs=1e-6)


def test_int8_on_cpu_quantises_every_linear_and_keeps_the_scores(tiny_ce):
    fp32 = load_cross_encoder(tiny_ce[1], "cpu")
    int8 = load_cross_encoder(tiny_ce[1], "cpu", cpu_dtype="int8")
    kinds = {type(m).__module__ for m in int8.model.modules() if "Linear" in type(m).__name__}
    assert kinds and all("quantized" in k for k in kinds)  # no fp32 Linear left
    assert any(isinstance(m, torch.nn.Linear) for m in fp32.model.modules())  # the fp32 one untouched
    queries = ["breast cancer", "vitamin d fracture", "zebrafish tnf"]
    a = np.concatenate([fp32.score(q, DOCS) for q in queries])
    b = np.concatenate([int8.score(q, DOCS) for q in queries])
    assert np.abs(a - b).max() <= 0.05 * (a.max() - a.min()) + 1e-3  # int8 error small against the spread
    with pytest.raises(InputError, match="int8"):
        load_cross_encoder(tiny_ce[1], "cpu", cpu_dtype="int4")


def test_loader_refuses_a_folder_without_a_model(tmp_path):
    with pytest.raises(InputError, match="config.json"):
        load_cross_encoder(tmp_path, "cpu")


def test_fine_stage_reorders_the_top_depth_and_records_its_trace(tiny_ce):
    ce = load_cross_encoder(tiny_ce[1], "cpu")
    ids = [f"d{i}" for i in range(len(DOCS))]
    texts = dict(zip(ids, DOCS))
    c = Candidates(np.arange(4, dtype=np.int64), ids, np.array([4, 3, 2, 1], np.float32))
    stage = CrossEncoderReranker(ce, lambda ds: [texts[d] for d in ds], depth=3)
    out = stage.rank(Request(query="vitamin d"), c, 10)
    # the top 3 are rescored; below the depth the candidates follow in their old order, still returned
    assert len(out) == 4 and set(out.doc_ids[:3]) == set(ids[:3]) and out.doc_ids[3] == ids[3]
    assert np.all(np.diff(out.scores) <= 0) and out.trace[-1].stage == "fine" and out.trace[-1].ms > 0
    np.testing.assert_allclose(out.features["ce"][:3], out.scores[:3], rtol=1e-6)
    assert out.features["ce_scored"].tolist() == [1, 1, 1, 0] and out.features["ce"][3] == 0
    assert stage.rank(Request(query="vitamin d"), c, 2).doc_ids == out.doc_ids[:2]
    assert c.features == {}  # the input candidates are not modified
    fused = CrossEncoderReranker(ce, lambda ds: [texts[d] for d in ds], depth=3, fuse_weight=100.0)
    assert fused.rank(Request(query="vitamin d"), c, 10).doc_ids == ids  # coarse order dominates


def test_tiny_cross_encoder_learns(tiny_home, tiny_dir, tmp_path, one_thread):
    config = Config(paths=PathsConfig(home=str(tiny_home)),
                    fine=replace(FineConfig(), backbone="tiny", max_length=64, group_size=3, negatives_depth=10,
                                 batch_queries=4, learning_rate=5e-3, epochs=10))
    log = tmp_path / "log.jsonl"
    out = train_cross_encoder(config, tiny_dir, tmp_path / "ce", log_file=log, device="cpu", progress=False)
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    losses = [r["loss"] for r in rows if "loss" in r]
    per_epoch = {}
    for r in rows:
        if "loss" in r:
            per_epoch.setdefault(r["epoch"], []).append(r["loss"])
    assert np.mean(per_epoch[9]) < np.mean(per_epoch[0]) - 0.3, per_epoch  # starts near ln 3 = 1.10
    assert len(losses) == rows[-1]["summary"]["steps"]
    meta = json.loads((out / "funnel_meta.json").read_text())
    assert meta["max_length"] == 64 and meta["training"]["steps"] == len(losses)
    assert load_cross_encoder(out, "cpu").max_length == 64


def test_training_keeps_the_epoch_with_the_best_dev_ndcg(tiny_home, tiny_dir, tmp_path, one_thread):
    from funnel.core.judgements import read_qrels
    from funnel.ranking.training.rerank_sets import evaluate_rerank, load_rerank_sets

    config = Config(paths=PathsConfig(home=str(tiny_home)),
                    fine=replace(FineConfig(), backbone="tiny", max_length=64, group_size=3, negatives_depth=10,
                                 batch_queries=4, learning_rate=5e-3, epochs=4, eval_depth=8))
    log = tmp_path / "log.jsonl"
    out = train_cross_encoder(config, tiny_dir, tmp_path / "ce", log_file=log, device="cpu", progress=False)
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    meta = json.loads((out / "funnel_meta.json").read_text())
    evals = [r for r in rows if "eval" in r and "ranker" not in r]  # "ranker": BM25's order, the reference
    assert [r["epoch"] for r in evals] == [1, 2, 3, 4] and all(r["eval"] == "dev" for r in evals)
    assert [r["ranker"] for r in rows if "ranker" in r] == ["bm25"]
    best = max(evals, key=lambda r: (r["nDCG@10"], -r["epoch"]))  # the first epoch reaching the maximum
    assert meta["training"]["beats_bm25"] == (best["nDCG@10"] > meta["training"]["bm25_dev_nDCG@10"])
    assert meta["epoch"] == best["epoch"] == meta["training"]["best_epoch"]
    # the folder holds that epoch's weights: re-evaluating it gives the logged figure
    ce = load_cross_encoder(out, "cpu")
    sets = load_rerank_sets(config, tiny_dir, "dev", 8)
    again = evaluate_rerank(ce.model, ce.tokenizer, sets, 64, read_qrels(tiny_dir, "dev"))["nDCG@10"]
    assert again == pytest.approx(best["nDCG@10"], abs=1e-4)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_half_precision_on_gpu_matches_fp32(tiny_ce):
    cpu = load_cross_encoder(tiny_ce[1], "cpu").score("breast cancer", DOCS)
    gpu = load_cross_encoder(tiny_ce[1], "cuda", dtype="fp16")
    assert gpu.model.dtype == torch.float16
    np.testing.assert_allclose(gpu.score("breast cancer", DOCS), cpu, atol=2e-2)

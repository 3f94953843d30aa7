"""Dual encoder and its training: encoding invariants, save/load, InfoNCE by hand, a few real training
steps of the tiny random BERT on the 50-document corpus with the loss falling."""
from __future__ import annotations

import json
import random
from dataclasses import replace

import numpy as np
import pytest

from funnel.core.config import load_config
from funnel.core.errors import InputError

TEXTS = ["Vitamin D deficiency and bone density.", "A short one.",
         "Gene expression in cancer cells changes under hypoxia, as the long abstract explains in detail.",
         "Neural networks for protein folding."]


@pytest.fixture(scope="module")
def tiny_model():
    from funnel.ranking.models.dual_encoder import build_dual_encoder

    return build_dual_encoder("tiny", query_max_len=16, doc_max_len=32)


def test_encode_unit_rows_order_and_batch_invariant(tiny_model):
    e = tiny_model.encode_docs(TEXTS, batch_size=4)
    assert e.shape == (4, 32) and e.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, rtol=1e-5)
    perm = [2, 0, 3, 1]
    e2 = tiny_model.encode_docs([TEXTS[i] for i in perm], batch_size=1)
    np.testing.assert_allclose(e2, e[perm], atol=1e-5)  # sorted batching keeps input order; padding ignored
    q = tiny_model.encode_queries(TEXTS[2:3])
    assert not np.allclose(q[0], e[2], atol=1e-4)  # queries are cut at 16 tokens, documents at 32


def test_mean_pool_ignores_padding():
    import torch

    from funnel.ranking.models.dual_encoder import mean_pool

    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])  # (1, 3, 2)
    mask = torch.tensor([[1, 1, 0]])
    assert mean_pool(hidden, mask).tolist() == [[2.0, 3.0]]


def test_save_load_round_trip_shared_and_separate(tmp_path, tiny_model):
    import copy

    from funnel.ranking.models.dual_encoder import DualEncoder, load_dual_encoder, read_meta, save_dual_encoder, tower_fingerprint

    save_dual_encoder(tiny_model, tmp_path / "shared", {"note": "x"})
    meta = read_meta(tmp_path / "shared")
    assert meta["shared"] is True and meta["format"] == 2 and meta["query_max_len"] == 16 and meta["note"] == "x"
    assert (tmp_path / "shared" / "model.safetensors").exists()
    loaded = load_dual_encoder(tmp_path / "shared", "cpu")
    np.testing.assert_allclose(loaded.encode_docs(TEXTS), tiny_model.encode_docs(TEXTS), atol=1e-6)

    doc_tower = copy.deepcopy(tiny_model.query_tower)
    with __import__("torch").no_grad():
        next(doc_tower.parameters()).add_(0.5)
    two = DualEncoder(tiny_model.query_tower, tiny_model.tokenizer, doc_tower=doc_tower, query_max_len=16,
                      doc_max_len=32)
    save_dual_encoder(two, tmp_path / "two")
    back = load_dual_encoder(tmp_path / "two", "cpu")
    assert not back.shared
    assert tower_fingerprint(back.doc_tower) == tower_fingerprint(doc_tower)
    np.testing.assert_allclose(back.encode_docs(TEXTS), two.encode_docs(TEXTS), atol=1e-6)
    np.testing.assert_allclose(back.encode_queries(TEXTS), tiny_model.encode_queries(TEXTS), atol=1e-6)
    with pytest.raises(InputError, match="config.json"):
        load_dual_encoder(tmp_path / "nothing", "cpu")


def test_info_nce_matches_hand_computation_and_masks():
    import torch

    from funnel.ranking.training.train_dense import info_nce

    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    d = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    targets = torch.tensor([0, 1])
    mask = torch.zeros(2, 3, dtype=torch.bool)
    t = 0.5
    got = info_nce(q, d, targets, mask, t).item()
    sims = np.array([[1, 0, 0.6], [0, 1, 0.8]]) / t
    want = np.mean([-sims[i, i] + np.log(np.exp(sims[i]).sum()) for i in range(2)])
    assert got == pytest.approx(want, rel=1e-6)
    mask[1, 2] = True  # document 2 judged for query 1: not a negative
    got = info_nce(q, d, targets, mask, t).item()
    want1 = -sims[1, 1] + np.log(np.exp(sims[1, :2]).sum())
    want0 = -sims[0, 0] + np.log(np.exp(sims[0]).sum())
    assert got == pytest.approx((want0 + want1) / 2, rel=1e-6)


def test_batch_tensors_dedups_and_masks_shared_positives():
    from funnel.ranking.training.train_dense import batch_tensors

    batch = [("q1", "a", ["n1"]), ("q2", "b", ["a"])]  # a: q1's positive, sampled as q2's negative
    judged = {"q1": {"a", "b"}, "q2": {"b"}}
    ids, targets, mask = batch_tensors(batch, judged)
    assert ids == ["a", "n1", "b"] and targets.tolist() == [0, 2]
    assert mask.tolist() == [[False, False, True], [False, False, False]]  # b is judged for q1


def test_mined_negatives_are_never_judged(tiny_home, tiny_dir):
    from funnel.core.judgements import read_qrels, read_queries
    from funnel.index.searcher import Bm25Retriever
    from funnel.ranking.training.train_dense import make_examples, mine_negatives

    qrels = read_qrels(tiny_dir, "train")
    queries = {q: t for q, t in read_queries(tiny_dir).items() if q in qrels}
    judged = {q: set(j) for q, j in qrels.items()}
    negs = mine_negatives(Bm25Retriever.open(tiny_home / "index"), queries, judged, 20)
    assert negs and all(not (set(n) & judged[q]) for q, n in negs.items())
    positives = {q: [d for d, g in j.items() if g > 0] for q, j in qrels.items()}
    ex = make_examples(positives, negs, 2, random.Random(0))
    assert ex and all(pos in judged[q] and not (set(n) & judged[q]) and len(n) == 2 for q, pos, n in ex)


def _config(home, **train):
    c = load_config(None, [f"paths.home={json.dumps(str(home))}"])
    base = dict(backbone="tiny", towers="shared", batch_size=6, epochs=4, learning_rate=1e-3, temperature=0.1,
                query_max_len=32, doc_max_len=64, hard_negatives=1)
    base.update(train)
    return replace(c, train_dense=replace(c.train_dense, **base))


def _losses(log_file):
    rows = [json.loads(line) for line in log_file.read_text().splitlines()]
    return [r["loss"] for r in rows if "loss" in r], [r for r in rows if "eval" in r], rows[-1]


def _epoch_means(log_file):
    rows = [json.loads(line) for line in log_file.read_text().splitlines() if '"loss"' in line]
    epochs = sorted({r["epoch"] for r in rows})
    return [np.mean([r["loss"] for r in rows if r["epoch"] == e]) for e in epochs]


def test_training_shared_towers_loss_falls_and_best_is_kept(tiny_home_copy, tiny_dir):
    from funnel.ranking.models.dual_encoder import load_dual_encoder, read_meta
    from funnel.ranking.training.train_dense import train_dual_encoder

    out, log_file = tiny_home_copy / "models" / "de", tiny_home_copy / "log.jsonl"
    s = train_dual_encoder(_config(tiny_home_copy), tiny_dir, out, log_file=log_file, device="cpu", progress=False)
    losses, evals, summary = _losses(log_file)
    assert summary["summary"] and summary["steps"] == len(losses) == 12
    means = _epoch_means(log_file)
    print("epoch mean losses", means)
    assert means[-1] < 0.7 * means[0]  # it learns
    assert [e["epoch"] for e in evals] == [0, 1, 2, 3, 4]
    best = max(evals, key=lambda e: e["nDCG@10"])
    meta = read_meta(out)
    assert meta["epoch"] == s["best_epoch"] and meta["dev"]["nDCG@10"] == pytest.approx(best["nDCG@10"])
    assert meta["shared"] is True
    load_dual_encoder(out, "cpu")  # loadable


def test_training_is_deterministic(tiny_home_copy, tiny_dir):
    from funnel.ranking.training.train_dense import train_dual_encoder

    cfg = _config(tiny_home_copy, epochs=1)
    runs = []
    for i in range(2):
        log_file = tiny_home_copy / f"log{i}.jsonl"
        train_dual_encoder(cfg, tiny_dir, tiny_home_copy / f"m{i}", log_file=log_file, device="cpu", progress=False)
        runs.append(_losses(log_file)[0])
    assert runs[0] == runs[1]


def test_query_side_training_keeps_document_tower(tiny_home_copy, tiny_dir):
    from funnel.ranking.models.dual_encoder import build_dual_encoder, load_dual_encoder, tower_fingerprint
    from funnel.ranking.training.train_dense import train_dual_encoder

    out, log_file = tiny_home_copy / "models" / "q", tiny_home_copy / "q.jsonl"
    train_dual_encoder(_config(tiny_home_copy, towers="query", hard_negatives=4, temperature=0.02), tiny_dir, out,
                       dev_split="none", log_file=log_file, device="cpu", progress=False)
    means = _epoch_means(log_file)
    print("epoch mean losses", means)
    assert means[-1] < 0.8 * means[0]
    model = load_dual_encoder(out, "cpu")  # no dev split: the last epoch is the one kept
    start = build_dual_encoder("tiny")
    assert not model.shared
    assert tower_fingerprint(model.doc_tower) == tower_fingerprint(start.query_tower)  # frozen
    assert tower_fingerprint(model.query_tower) != tower_fingerprint(start.query_tower)  # trained


def test_unsupervised_crops_train_without_judgements(tiny_home_copy):
    from funnel.ranking.training.train_dense import crop_pairs, train_dual_encoder

    queries, positives = crop_pairs([("d", " ".join(f"w{i}" for i in range(40)))], 5, random.Random(0))
    assert all(q in " ".join(f"w{i}" for i in range(40)) and positives[k] == ["d"] for k, q in queries.items())
    log_file = tiny_home_copy / "u.jsonl"
    s = train_dual_encoder(_config(tiny_home_copy, unsupervised=True, unsupervised_pairs=32, epochs=1), None,
                           tiny_home_copy / "models" / "u", log_file=log_file, device="cpu", progress=False)
    assert s["steps"] == 6 and s["dev"] is None


def test_sentence_pairs_take_one_whole_sentence_of_their_document(tiny_home_copy):
    from funnel.ranking.training.train_dense import sentence_pairs, train_dual_encoder

    text = ("Vitamin D levels fall in winter across northern cohorts. Supplementation restores them within "
            "eight weeks in most adults. Short one. A third sentence reports no effect on fracture risk at all.")
    queries, positives = sentence_pairs([("d", text), ("solo", "Only one sentence of enough words here.")], 20,
                                        random.Random(0))
    sentences = {"Vitamin D levels fall in winter across northern cohorts.",
                 "Supplementation restores them within eight weeks in most adults.",
                 "A third sentence reports no effect on fracture risk at all."}
    assert set(queries.values()) <= sentences and len(set(queries.values())) > 1  # "Short one." is too short
    assert all(p == ["d"] for p in positives.values())  # a one-sentence document never pairs with itself
    with pytest.raises(InputError, match="two sentences"):
        sentence_pairs([("solo", "Only one sentence of enough words here.")], 3, random.Random(0))
    s = train_dual_encoder(_config(tiny_home_copy, unsupervised=True, unsupervised_mode="sentence",
                                   unsupervised_pairs=16, epochs=1), None, tiny_home_copy / "models" / "s",
                           device="cpu", progress=False)
    assert s["steps"] == 3
    with pytest.raises(InputError, match="unsupervised_mode"):
        train_dual_encoder(_config(tiny_home_copy, unsupervised=True, unsupervised_mode="ict"), None, progress=False)


def test_auto_towers_train_the_query_side_alone_on_a_cpu(tiny_home_copy, tiny_dir):
    import torch

    from funnel.ranking.models.dual_encoder import load_dual_encoder, read_meta
    from funnel.ranking.training.train_dense import resolve_towers, train_dual_encoder

    assert resolve_towers("auto", torch.device("cuda")) == "shared" and resolve_towers("query", torch.device("cuda")) == "query"
    out = tiny_home_copy / "models" / "auto"
    train_dual_encoder(_config(tiny_home_copy, towers="auto", epochs=1), tiny_dir, out, device="cpu", progress=False)
    assert read_meta(out)["towers"] == "query"
    assert load_dual_encoder(out, "cpu").doc_tower is not None  # the frozen document side, saved beside


def test_bad_training_settings_name_the_field(tiny_home_copy, tiny_dir):
    from funnel.ranking.training.train_dense import train_dual_encoder

    with pytest.raises(InputError, match="train_dense.towers"):
        train_dual_encoder(_config(tiny_home_copy, towers="both"), tiny_dir, progress=False)
    with pytest.raises(InputError, match="--data"):
        train_dual_encoder(_config(tiny_home_copy), None, progress=False)

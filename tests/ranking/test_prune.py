"""funnel.ranking.training.prune: head importance, iterative pruning, distillation recovery, `funnel prune` end to end
(tiny random cross-encoder on the 50-document corpus)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from funnel.core.config import Config, PathsConfig  # noqa: E402
from funnel.core.errors import InputError  # noqa: E402
from funnel.ranking.models import heads as H  # noqa: E402
from funnel.ranking.training import prune as P  # noqa: E402


@pytest.fixture(scope="module")
def tiny_ce(tmp_path_factory):
    """A tiny random cross-encoder saved as a model folder, with its tokenizer.

    Initialised with a wide weight range: at BERT's default (0.02) a random model's logit hardly
    depends on the input, which leaves importance and distillation nothing to measure. No dropout,
    so a few recovery steps show their effect without noise.
    """
    from transformers import BertForSequenceClassification

    from funnel.ranking.models.backbone import load_tokenizer, tiny_config
    from funnel.ranking.models.cross_encoder import save_cross_encoder

    torch.manual_seed(3)
    model = BertForSequenceClassification(tiny_config(num_labels=1, initializer_range=0.2,
                                                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))
    out = tmp_path_factory.mktemp("ce")
    save_cross_encoder(model, load_tokenizer("tiny"), out, {"max_length": 64})
    return out


@pytest.fixture(scope="module")
def sets(tiny_home, tiny_dir):
    config = Config(paths=PathsConfig(home=str(tiny_home)))
    return P.load_rerank_sets(config, tiny_dir, "dev", depth=8)


def _model(path):
    from funnel.ranking.models.backbone import load_tokenizer

    return H.load_pruned(path).eval(), load_tokenizer(path)


def test_rerank_sets_hold_bm25_candidates_and_labels(sets, tiny_dir):
    from funnel.core.judgements import read_qrels

    qrels = read_qrels(tiny_dir, "dev")
    assert [s.qid for s in sets] == sorted(qrels)
    for s in sets:
        assert 0 < len(s.doc_ids) <= 8 and len(s.texts) == len(s.doc_ids)
        assert s.labels.tolist() == [qrels[s.qid].get(d, 0) for d in s.doc_ids]
    assert any(s.labels.sum() > 0 for s in sets)


def test_importance_is_the_mask_gradient(tiny_ce, sets):
    """Unnormalised importance equals |dL/dmask| measured by central finite differences (float64)."""
    model, tok = _model(tiny_ce)
    model.double()
    s = next(s for s in sets if s.labels.sum() > 0)
    raw, _ = P.unit_importance(model, tok, [s], 64, ffn=False, normalise=False)

    def loss(masks):
        with H.UnitMask(model, masks), torch.no_grad():
            logits = P.score_pairs(model, tok, s.query, s.texts, 64)
        return float(P.label_loss(logits, torch.from_numpy(s.labels).double()))

    eps = 1e-4
    for layer, n in enumerate(H.heads_per_layer(model)):
        for h in range(n):
            plus = [torch.ones(k, dtype=torch.float64) for k in H.heads_per_layer(model)]
            minus = [m.clone() for m in plus]
            plus[layer][h] += eps
            minus[layer][h] -= eps
            fd = abs(loss(plus) - loss(minus)) / (2 * eps)
            assert raw[layer][h] == pytest.approx(fd, rel=1e-3, abs=1e-7)


def test_importance_is_normalised_per_layer(tiny_ce, sets):
    model, tok = _model(tiny_ce)
    heads, ffn = P.unit_importance(model, tok, sets, 64)
    assert [len(x) for x in heads] == H.heads_per_layer(model)
    assert [len(x) for x in ffn] == H.ffn_sizes(model)
    for x in heads + ffn:
        assert np.all(x >= 0) and np.linalg.norm(x) == pytest.approx(1.0)
    assert all(p.requires_grad for p in model.parameters())  # restored after scoring


def test_choose_heads_takes_least_important_but_keeps_one_per_layer():
    imp = [np.array([0.9, 0.1, 0.5]), np.array([0.01, 0.02]), np.array([0.3, 0.8])]
    assert P.choose_heads(imp, 2) == {1: [0], 0: [1]}  # 0.01, then 0.02 is layer 1's last head: 0.1
    removed = P.choose_heads(imp, 10)
    assert sorted((k, sorted(v)) for k, v in removed.items()) == [(0, [1, 2]), (1, [0]), (2, [0])]
    ffn = P.choose_ffn([np.array([0.5, 0.1, 0.3, 0.2])], [2])
    assert sorted(ffn[0]) == [1, 3]


def test_prune_iteratively_reaches_the_target(tiny_ce, sets):
    model, tok = _model(tiny_ce)
    pc = replace(Config().prune, target=0.5, ffn_target=0.25, steps=2)
    rounds = P.prune_iteratively(model, tok, sets, pc, 64)
    assert sum(H.heads_per_layer(model)) == 4 and H.ffn_sizes(model) == [48, 48]
    assert [r["heads_left"] for r in rounds] == [6, 4]
    kept = H.heads_kept(model)
    assert all(1 <= len(k) <= 4 and k == sorted(set(k)) for k in kept)


def test_latency_budget_keeps_pruning_up_to_max_target(tiny_ce, sets):
    model, tok = _model(tiny_ce)
    # An unreachable budget: rounds continue past `target` until `max_target` of the heads are gone.
    pc = replace(Config().prune, target=0.25, max_target=0.75, steps=1, latency_budget=1e-6)
    rounds = P.prune_iteratively(model, tok, sets, pc, 64)
    assert [r["heads_left"] for r in rounds] == [6, 4, 2]
    assert sum(H.heads_per_layer(model)) == 2 and all(r["latency_ratio"] > 0 for r in rounds)


def test_pseudo_queries_add_title_groups(tiny_home, tiny_dir):
    """prune.recover_pseudo_queries: document titles join the recovery queries, each group led by its own document."""
    from funnel.core.store import DocumentStore

    config = Config(paths=PathsConfig(home=str(tiny_home)))
    config = replace(config, prune=replace(config.prune, recover_group_size=4))
    judged = P.recovery_data(config, tiny_dir)
    assert judged.pseudo_groups == 0
    mixed = P.recovery_data(replace(config, prune=replace(config.prune, recover_pseudo_queries=10)), tiny_dir)
    # up to 10: a title whose BM25 results hold fewer than 3 other documents makes no group
    assert 5 <= mixed.pseudo_groups <= 10 and len(mixed.groups) == len(judged.groups) + mixed.pseudo_groups
    as_set = lambda groups: {(q, tuple(ds)) for q, ds in groups}
    assert as_set(judged.groups) <= as_set(mixed.groups)  # the judged groups are unchanged
    with DocumentStore(tiny_home / "store.sqlite", readonly=True) as store:
        for q, ds in mixed.groups:
            if q.startswith(P.PSEUDO_PREFIX):
                own = q[len(P.PSEUDO_PREFIX):]
                assert ds[0] == own and own not in ds[1:] and len(ds) == 4
                assert mixed.queries[q] == store.get(own).title.strip()


def test_recovery_moves_the_student_towards_the_teacher(tiny_ce, tiny_home, tiny_dir):
    import copy

    import torch.nn.functional as F

    teacher, tok = _model(tiny_ce)
    student = copy.deepcopy(teacher)
    H.prune_heads(student, {0: [0, 1, 2], 1: [1, 2, 3]})
    config = Config(paths=PathsConfig(home=str(tiny_home)))
    config = replace(config, prune=replace(config.prune, recover_steps=30, recover_lr=3e-3, distill_temperature=1.0,
                                           recover_group_size=4, distill_alpha=0.0))
    data = P.recovery_data(config, tiny_dir)  # the groups recovery trains on
    assert data.groups and all(len(ds) == 4 for _, ds in data.groups)

    def kl():  # on the training groups: KL(teacher || student) over each group's logits
        total = 0.0
        with torch.no_grad():
            for q, ds in data.groups:
                texts = [data.texts[d] for d in ds]
                t = P.score_pairs(teacher, tok, data.queries[q], texts, 64)
                s = P.score_pairs(student, tok, data.queries[q], texts, 64)
                total += float(F.kl_div(F.log_softmax(s, 0), F.log_softmax(t, 0), log_target=True, reduction="sum"))
        return total

    before = kl()
    summary = P.distill(student, teacher, tok, config, data, 64, config.prune.recover_steps)
    assert summary["steps"] == 30
    assert kl() < 0.5 * before


def test_hidden_state_distillation_pulls_every_layer_to_the_teacher(tiny_ce, tiny_home, tiny_dir):
    """prune.distill_hidden > 0: recovery also matches the teacher's hidden states layer by layer."""
    import copy

    teacher, tok = _model(tiny_ce)
    student = copy.deepcopy(teacher)
    H.prune_heads(student, {0: [0, 1, 2], 1: [1, 2, 3]})
    H.prune_ffn(student, {0: list(range(16)), 1: list(range(16))})
    config = Config(paths=PathsConfig(home=str(tiny_home)))
    config = replace(config, prune=replace(config.prune, recover_lr=3e-3, recover_group_size=4, distill_alpha=0.0,
                                           distill_hidden=1.0))
    data = P.recovery_data(config, tiny_dir)
    q, ds = data.groups[0]
    enc = tok([data.queries[q]] * len(ds), [data.texts[d] for d in ds], truncation="only_second", max_length=64,
              padding=True, return_tensors="pt")

    def states():
        with torch.no_grad():
            return (teacher(**enc, output_hidden_states=True).hidden_states,
                    student(**enc, output_hidden_states=True).hidden_states)

    def gap():
        t, s = states()
        return float(P.hidden_loss(s, t, enc["attention_mask"]))

    t, s = states()
    assert len(t) == len(s) == 3 and torch.equal(t[0], s[0])  # embeddings are not pruned
    before = gap()
    assert before > 0 and P.hidden_loss(teacher(**enc, output_hidden_states=True).hidden_states,
                                        teacher(**enc, output_hidden_states=True).hidden_states,
                                        enc["attention_mask"]) == 0
    P.distill(student, teacher, tok, config, data, 64, 30)
    assert gap() < 0.5 * before


def test_funnel_prune_end_to_end(tiny_ce, tiny_home, tiny_dir, tmp_path, capsys):
    from funnel.cli.main import main
    from funnel.ranking.models.cross_encoder import load_cross_encoder, read_meta

    out = tmp_path / "pruned"
    rc = main(["-q", "--home", str(tiny_home), "--set", "prune.depth=8", "--set", "prune.recover_group_size=4",
               "prune", "--model", str(tiny_ce), "--data", str(tiny_dir), "--out", str(out),
               "--target", "0.5", "--ffn", "0.5", "--steps", "2", "--recover-steps", "2", "--pseudo-queries", "5"])
    assert rc == 0
    assert "heads 8 -> 4" in capsys.readouterr().out
    meta = read_meta(out)["pruning"]
    assert meta["heads_after"] == 4 and meta["parameters_after"] < meta["parameters_before"]
    assert set(meta["ndcg_at_10"]) == {"teacher", "pruned", "recovered"}
    assert meta["recovery"]["steps"] == 2 and meta["recovery"]["pseudo_groups"] > 0
    assert H.read_structure(out) == {"heads_kept": meta["heads_kept"], "ffn_sizes": [32, 32]}
    # The serving loader takes the pruned folder as it is, and scores like the saved model.
    ce = load_cross_encoder(out, device="cpu")
    assert H.heads_per_layer(ce.model) == [len(k) for k in meta["heads_kept"]]
    direct, tok = _model(out)
    with torch.no_grad():
        ref = P.score_pairs(direct, tok, "vitamin d", ["vitamin d levels", "a cat"], 64).numpy()
    np.testing.assert_allclose(ce.score("vitamin d", ["vitamin d levels", "a cat"]), ref, rtol=1e-5, atol=1e-6)


def test_recovery_between_rounds(tiny_ce, tiny_home, tiny_dir):
    """Schedule "rounds": each cut is followed by its share of the recovery, logged with the round."""
    config = Config(paths=PathsConfig(home=str(tiny_home)))
    config = replace(config, prune=replace(config.prune, target=0.5, steps=2, recover_steps=4, recover_group_size=4,
                                           depth=8, recover_schedule="rounds"))
    out = P.prune_model(config, tiny_ce, tiny_dir, progress=False)
    from funnel.ranking.models.cross_encoder import read_meta

    meta = read_meta(out)["pruning"]
    assert [r["recovery"]["steps"] for r in meta["rounds"]] == [2, 2]
    assert meta["recovery"]["schedule"] == "rounds" and meta["recovery"]["steps"] == 4
    assert set(meta["ndcg_at_10"]) == {"teacher", "recovered"} and meta["heads_after"] == 4


def test_bad_requests_are_refused(tiny_ce, tiny_home, tiny_dir, tmp_path, capsys):
    from funnel.cli.main import main
    from funnel.ranking.models.backbone import load_backbone, save_backbone

    args = ["-q", "--home", str(tiny_home), "prune", "--data", str(tiny_dir), "--recover-steps", "0"]
    assert main(args + ["--model", str(tiny_ce), "--target", "1.0"]) == 2
    assert "prune.target" in capsys.readouterr().err
    assert main(args + ["--model", str(tmp_path / "nothing")]) == 2
    assert "no config.json" in capsys.readouterr().err
    save_backbone(load_backbone("tiny"), None, tmp_path / "bare")
    assert main(args + ["--model", str(tmp_path / "bare")]) == 2
    assert "not a cross-encoder" in capsys.readouterr().err
    with pytest.raises(InputError, match="recover_schedule"):
        P.prune_model(replace(Config(paths=PathsConfig(home=str(tiny_home))),
                              prune=replace(Config().prune, recover_schedule="often")), tiny_ce, tiny_dir)
    with pytest.raises(InputError, match="overwrite"):
        P.prune_model(Config(paths=PathsConfig(home=str(tiny_home))), tiny_ce, tiny_dir, tiny_ce)

"""Saved models load in the tools of their ecosystems with the scores Funnel computes: the cross-encoder
in `transformers.AutoModelForSequenceClassification` and `sentence_transformers.CrossEncoder`, pruned or
not; without ``trust_remote_code`` those tools refuse instead of silently using a stock [CLS] head."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from funnel.ranking.models import heads as H
from funnel.ranking.models.backbone import load_tokenizer
from funnel.ranking.models.cross_encoder import build_cross_encoder, load_cross_encoder, save_cross_encoder

QUERY = "vitamin d deficiency"
DOCS = ["Vitamin D levels in elderly patients with fractures.",
        "Tumour necrosis factor signalling in zebrafish granulomas.",
        "A randomised trial of vitamin supplementation and bone density over five years of follow-up."]


def _funnel_scores(path) -> np.ndarray:
    return load_cross_encoder(path, "cpu", max_length=64).score(QUERY, DOCS)


def _saved(tmp_path, pooling: str, pruned: bool):
    model = build_cross_encoder("tiny", seed=3, pooling=pooling).eval()
    with torch.no_grad():  # a random head gives near-equal logits; spread them so a wrong head shows
        model.classifier.weight.mul_(50)
    if pruned:
        H.prune_heads(model, {0: [0], 1: [1]})
        H.prune_ffn(model, {0: list(range(5)), 1: list(range(3))})
    return save_cross_encoder(model, load_tokenizer("tiny"), tmp_path / f"{pooling}-{pruned}", {"max_length": 64})


@pytest.mark.parametrize("pooling,pruned", [("mean", False), ("cls", False), ("mean", True)])
def test_cross_encoder_loads_in_transformers_with_funnels_scores(tmp_path, pooling, pruned):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = _saved(tmp_path, pooling, pruned)
    model = AutoModelForSequenceClassification.from_pretrained(str(path), trust_remote_code=True).eval()
    tok = AutoTokenizer.from_pretrained(str(path))
    enc = tok([QUERY] * len(DOCS), DOCS, truncation="only_second", max_length=64, padding=True, return_tensors="pt")
    with torch.inference_mode():
        theirs = model(**enc).logits[:, 0].numpy()
    ours = _funnel_scores(path)
    assert np.ptp(ours) > 1e-3  # the scores differ per document, so equality means something
    np.testing.assert_allclose(theirs, ours, atol=1e-4)


@pytest.mark.parametrize("pooling,pruned", [("mean", False), ("mean", True)])
def test_cross_encoder_loads_in_sentence_transformers_with_funnels_scores(tmp_path, pooling, pruned):
    from sentence_transformers import CrossEncoder

    path = _saved(tmp_path, pooling, pruned)
    ce = CrossEncoder(str(path), trust_remote_code=True, device="cpu", max_length=64)
    theirs = ce.predict([(QUERY, d) for d in DOCS])
    np.testing.assert_allclose(theirs, _funnel_scores(path), atol=1e-4)


def test_without_trust_remote_code_other_tools_refuse(tmp_path):
    from transformers import AutoModelForSequenceClassification

    path = _saved(tmp_path, "mean", False)
    with pytest.raises(ValueError):
        AutoModelForSequenceClassification.from_pretrained(str(path), trust_remote_code=False)


def test_legacy_bert_folder_still_loads(tmp_path):
    """Cross-encoders saved before this format (stock BertForSequenceClassification + funnel_pooling)."""
    import json

    path = _saved(tmp_path, "mean", True)
    before = _funnel_scores(path)
    cfg = json.loads((path / "config.json").read_text())
    cfg.update(model_type="bert", architectures=["MeanPoolBertForSequenceClassification"])
    cfg.pop("auto_map")
    (path / "config.json").write_text(json.dumps(cfg))
    (path / "modeling_funnel_ce.py").unlink()
    np.testing.assert_allclose(_funnel_scores(path), before, atol=1e-6)


@pytest.mark.parametrize("shared", [True, False])
def test_dual_encoder_is_a_sentence_transformer_with_funnels_vectors(tmp_path, shared):
    from sentence_transformers import SentenceTransformer

    from funnel.ranking.models.dual_encoder import build_dual_encoder, load_dual_encoder, save_dual_encoder

    model = build_dual_encoder("tiny", shared=shared, seed=1)
    if not shared:  # make the towers differ, so a mixed-up tower shows
        with torch.no_grad():
            for p in model.doc_tower.parameters():
                p.add_(0.05 * torch.randn_like(p))
    path = save_dual_encoder(model, tmp_path / "de")
    st = SentenceTransformer(str(path), device="cpu")
    ours = load_dual_encoder(path, "cpu")
    queries = ["vitamin d deficiency", "zebrafish granuloma"]
    np.testing.assert_allclose(st.encode_document(DOCS), ours.encode_docs(DOCS), atol=1e-5)
    np.testing.assert_allclose(st.encode(DOCS), ours.encode_docs(DOCS), atol=1e-5)
    np.testing.assert_allclose(st.encode_query(queries), ours.encode_queries(queries), atol=1e-5)
    np.testing.assert_allclose(ours.encode_docs(DOCS), model.encode_docs(DOCS), atol=1e-6)
    if not shared:
        assert np.abs(ours.encode_queries(DOCS) - ours.encode_docs(DOCS)).max() > 1e-3


def test_foreign_sentence_transformer_pooling_and_prompts_are_honoured(tmp_path):
    """A BGE-style model: [CLS] pooling and a query instruction, declared in its own files."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Normalize, Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    from funnel.ranking.models.backbone import load_backbone, save_backbone
    from funnel.ranking.models.dual_encoder import load_dual_encoder

    save_backbone(load_backbone("tiny", seed=4), load_tokenizer("tiny"), tmp_path / "hf")
    t = Transformer(str(tmp_path / "hf"))
    prompts = {"query": "Represent this sentence for searching relevant passages: ", "document": ""}
    SentenceTransformer(modules=[t, Pooling(t.get_embedding_dimension(), "cls"), Normalize()], device="cpu",
                        prompts=prompts).save(str(tmp_path / "bge"))
    st = SentenceTransformer(str(tmp_path / "bge"), device="cpu")
    ours = load_dual_encoder(tmp_path / "bge", "cpu")
    assert ours.pooling == "cls" and ours.query_prompt == prompts["query"]
    np.testing.assert_allclose(st.encode_query(["vitamin d"]), ours.encode_queries(["vitamin d"]), atol=1e-5)
    np.testing.assert_allclose(st.encode_document(DOCS), ours.encode_docs(DOCS), atol=1e-5)

"""Recall stages: RRF and weighted fusion on hand-made runs, dense and hybrid recall on the tiny home
with a real (tiny, random) dual encoder and vector index, and the embed / eval-recall commands."""
from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest

from funnel.core.config import load_config
from funnel.core.errors import FunnelError, InputError
from funnel.ranking.serving.recall import fuse_rrf, fuse_weighted, minmax
from funnel.ranking.serving.stages import Candidates, Request


def test_rrf_by_hand():
    ids, scores = fuse_rrf([["a", "b", "c"], ["b", "d"]], k=60)
    want = {"a": 1 / 61, "b": 1 / 62 + 1 / 61, "c": 1 / 63, "d": 1 / 62}
    assert ids == ["b", "a", "d", "c"]
    np.testing.assert_allclose(scores, [want[d] for d in ids])
    # ties keep first appearance; weights scale each run
    ids, _ = fuse_rrf([["x"], ["y"]], k=0)
    assert ids == ["x", "y"]
    ids, scores = fuse_rrf([["x"], ["y"]], k=0, weights=[1.0, 3.0])
    assert ids == ["y", "x"] and scores.tolist() == [3.0, 1.0]
    with pytest.raises(InputError):
        fuse_rrf([["a"]], k=-1)


def test_weighted_fusion_by_hand():
    assert minmax(np.array([2.0, 2.0])).tolist() == [1.0, 1.0]
    bm25 = {"a": 10.0, "b": 5.0, "c": 0.0}  # normalised 1, 0.5, 0
    dense = {"c": 0.9, "d": 0.5, "a": 0.1}  # normalised 1, 0.5, 0
    ids, scores = fuse_weighted([bm25, dense], [0.4, 0.6])
    want = {"a": 0.4 * 1 + 0.6 * 0, "b": 0.4 * 0.5, "c": 0.4 * 0 + 0.6 * 1, "d": 0.6 * 0.5}
    assert ids == sorted(want, key=lambda d: -want[d])
    np.testing.assert_allclose(scores, [want[d] for d in ids])
    with pytest.raises(InputError):
        fuse_weighted([bm25], [0.5, 0.5])


@pytest.fixture(scope="module")
def dense_home(tiny_home, tmp_path_factory):
    """tiny_home plus a vector index made by the tiny random dual encoder (saved as the home's model)."""
    from funnel.ranking.models.dual_encoder import build_dual_encoder, embed_store, save_dual_encoder

    home = tmp_path_factory.mktemp("dense_home") / "home"
    shutil.copytree(tiny_home, home)
    save_dual_encoder(build_dual_encoder("tiny", query_max_len=32, doc_max_len=64), home / "models" / "dual-encoder")
    manifest = embed_store(_config(home), progress=False)
    assert manifest["count"] == 50 and manifest["dim"] == 32
    return home


def _config(home, *sets):
    return load_config(None, [f"paths.home={json.dumps(str(home))}", *sets])


def test_dense_recall_returns_nearest_documents(dense_home):
    from funnel.index.vectors import VectorIndex
    from funnel.ranking.serving.recall import DenseRecall, build_recall

    stage = build_recall(_config(dense_home), "dense")
    assert isinstance(stage, DenseRecall)
    c = stage.rank(Request(query="vitamin D and bone health"), Candidates.empty(), 10)
    vi = VectorIndex(dense_home / "index" / "dense", backend="exact")
    q = stage.embed_query("vitamin D and bone health")
    sims = vi.vectors @ q
    want = [vi.doc_ids[i] for i in np.argsort(-sims, kind="stable")]
    assert c.doc_ids == want[:len(c.doc_ids)] and len(c) == 50  # k (1000) capped at the 50 documents
    np.testing.assert_allclose(c.features["dense"], np.sort(sims)[::-1], rtol=1e-5, atol=1e-6)
    reader = stage.reader
    assert all(reader.doc_ids[o] == d for o, d in zip(c.ords, c.doc_ids))
    assert c.trace[-1].stage == "dense"


def test_int8_query_tower_keeps_the_fp32_document_tower(dense_home):
    import torch

    from funnel.ranking.serving.recall import open_dense

    fp32, _ = open_dense(_config(dense_home))
    int8, vectors = open_dense(_config(dense_home, 'dense.cpu_dtype="int8"'))
    assert not any(isinstance(m, torch.nn.Linear) for m in int8.query_tower.modules())  # all quantised
    assert any(isinstance(m, torch.nn.Linear) for m in int8.doc_tower.modules())  # documents stay fp32
    queries = ["vitamin D and bone health", "tumour necrosis factor", "breast cancer risk"]
    a, b = fp32.encode_queries(queries), int8.encode_queries(queries)
    assert np.abs(a - b).max() < 0.1 and (a * b).sum(1).min() > 0.99  # the same directions, nearly
    np.testing.assert_allclose(int8.encode_docs(["a document"]), fp32.encode_docs(["a document"]), atol=1e-6)
    with pytest.raises(FunnelError, match="dense.cpu_dtype = 'fp8': expected one of 'fp32', 'int8'"):
        open_dense(_config(dense_home, 'dense.cpu_dtype="fp8"'))  # refused when the config is loaded


@pytest.mark.parametrize("fusion", ["rrf", "weighted"])
def test_hybrid_recall_fuses_both_routes_with_complete_features(dense_home, fusion):
    from funnel.ranking.serving.recall import HybridRecall, build_recall

    config = _config(dense_home, f"recall.fusion={json.dumps(fusion)}", "recall.bm25_k=10", "recall.dense_k=10")
    hybrid = build_recall(config, "auto")
    assert isinstance(hybrid, HybridRecall)
    query = "vitamin D deficiency"
    b = hybrid.bm25.rank(Request(query=query), Candidates.empty(), 10)
    d = hybrid.dense.rank(Request(query=query), Candidates.empty(), 10)
    c = hybrid.rank(Request(query=query), Candidates.empty(), 20)
    assert set(c.doc_ids) == set(b.doc_ids) | set(d.doc_ids)
    if fusion == "rrf":
        want_ids, _ = fuse_rrf([b.doc_ids, d.doc_ids], 60)
    else:
        want_ids, _ = fuse_weighted([dict(zip(b.doc_ids, b.scores)), dict(zip(d.doc_ids, d.scores))], [0.5, 0.5])
    assert c.doc_ids == want_ids
    # both features for every candidate, equal to what each route scores on its own
    full_bm25 = hybrid.bm25.retriever.score(query)
    reader = hybrid.bm25.retriever.reader
    np.testing.assert_allclose(c.features["bm25"], [full_bm25[reader.ord_of(x)] for x in c.doc_ids], rtol=1e-5)
    vecs, found = hybrid.dense.vectors.lookup(c.doc_ids)
    assert found.all()
    np.testing.assert_allclose(c.features["dense"], vecs @ hybrid.dense.embed_query(query), rtol=1e-4, atol=1e-5)
    assert np.all(np.diff(c.scores) <= 0)


def test_auto_route_is_bm25_without_vector_index(tiny_home):
    from funnel.ranking.serving.recall import Bm25Recall, build_recall

    assert isinstance(build_recall(_config(tiny_home), "auto"), Bm25Recall)
    with pytest.raises(InputError, match="route"):
        build_recall(_config(tiny_home), "sparse")


def test_mismatched_encoder_is_refused(dense_home, tmp_path):
    from funnel.ranking.models.dual_encoder import build_dual_encoder, save_dual_encoder
    from funnel.ranking.serving.recall import build_recall

    other = save_dual_encoder(build_dual_encoder("tiny", seed=1), tmp_path / "other")
    with pytest.raises(FunnelError, match="--rebuild"):
        build_recall(_config(dense_home, f"dense.model={json.dumps(str(other))}"), "dense")


def test_embed_is_incremental_and_cli_eval_recall(dense_home, tmp_path, tiny_dir, capsys):
    from funnel.cli.main import main
    from funnel.core.store import Document, DocumentStore
    from funnel.index.vectors import VectorIndex, read_manifest

    home = tmp_path / "home"
    shutil.copytree(dense_home, home)
    with DocumentStore(home / "store.sqlite") as store:
        store.write_batch([Document("new-1", "Fresh", "a new document about zebrafish hearts")])
    assert main(["-q", "--home", str(home), "embed"]) == 0
    m = read_manifest(home / "index" / "dense")
    assert m["generation"] == 2 and len(m["parts"]) == 2 and m["count"] == 51
    assert "new-1" in VectorIndex(home / "index" / "dense").doc_ids
    assert main(["-q", "--home", str(home), "embed"]) == 0  # nothing new: same documents
    assert read_manifest(home / "index" / "dense")["count"] == 51
    capsys.readouterr()
    assert main(["-q", "--home", str(home), "eval-recall", "--data", str(tiny_dir), "-k", "20"]) == 0
    out = capsys.readouterr().out
    assert "| bm25 |" in out and "| dense |" in out and "| hybrid |" in out
    assert main(["-q", "--home", str(home), "embed", "--model", str(tmp_path / "missing")]) == 2
    assert "config.json" in capsys.readouterr().err


def test_pagerank_prior_reorders_bm25_recall(tiny_home_copy):
    """With `recall.pagerank_prior`, a hub's BM25 gets w x log(PR x N) added; the bm25 feature stays raw."""
    from funnel.core.config import Config, PathsConfig
    from funnel.index.pagerank import save_pagerank
    from funnel.ranking.serving.recall import build_recall

    home = tiny_home_copy
    config = Config(paths=PathsConfig(home=str(home)))
    plain = build_recall(config, "bm25").rank(Request(query="cancer risk"), Candidates.empty())
    assert build_recall(replace(config, recall=replace(config.recall, pagerank_prior=1.0)), "bm25").prior is None
    last = plain.doc_ids[-1]  # make the weakest match a hub: PR x N = 1000 for it, 1 for the rest
    others = [d for d in plain.doc_ids if d != last]
    n = len(plain.doc_ids)
    pr = np.full(n, 1.0 / (n + 999))
    pr[0] = 1000.0 / (n + 999)
    save_pagerank(home / "features" / "pagerank.parquet", [last] + others, pr)
    boosted_cfg = replace(config, recall=replace(config.recall, pagerank_prior=1.0))
    boosted = build_recall(boosted_cfg, "bm25").rank(Request(query="cancer risk"), Candidates.empty())
    assert boosted.doc_ids[0] == last
    assert set(boosted.doc_ids) == set(plain.doc_ids)  # a prior reorders matches, never adds documents
    raw = dict(zip(plain.doc_ids, plain.features["bm25"].tolist()))
    assert dict(zip(boosted.doc_ids, boosted.features["bm25"].tolist())) == pytest.approx(raw)
    assert boosted.scores[0] == pytest.approx(raw[last] + np.log(1000.0 * n / (n + 999)), rel=1e-5)


def test_served_pipeline_applies_the_pagerank_prior(tiny_home_copy):
    """`funnel search`, the API and coarse training build recall through `Pipeline.from_config`: the
    PageRank prior that `funnel eval-recall` honours must reach them too (it once did not)."""
    from funnel.core.config import Config, PathsConfig
    from funnel.index.pagerank import save_pagerank
    from funnel.ranking.serving.pipeline import Pipeline

    home = tiny_home_copy
    config = Config(paths=PathsConfig(home=str(home)))
    plain = Pipeline.from_config(config, "cpu", stages=[])
    try:
        before = plain.search("cancer risk", 10).doc_ids
    finally:
        plain.close()
    hub = before[-1]
    n = len(before)
    pr = np.full(n, 1.0 / (n + 999))
    pr[0] = 1000.0 / (n + 999)
    save_pagerank(config.paths.pagerank, [hub] + [d for d in before if d != hub], pr)
    boosted = replace(config, recall=replace(config.recall, pagerank_prior=1.0))
    pipe = Pipeline.from_config(boosted, "cpu", stages=[])
    try:
        assert pipe.stages[0][0].prior is not None
        assert pipe.search("cancer risk", 10).doc_ids[0] == hub != before[0]
    finally:
        pipe.close()

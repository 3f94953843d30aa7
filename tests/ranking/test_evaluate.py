"""Evaluation: metrics against hand-computed values, TREC run files, the BM25 evaluation entry point."""
from __future__ import annotations

import math

import pytest

from funnel.core.config import BM25Config
from funnel.core.errors import InputError
from funnel.ranking.evaluate import evaluate, evaluate_retriever, format_table, truncate, write_trec_run


def test_metrics_by_hand():
    qrels = {"q1": {"a": 1, "b": 1}, "q2": {"c": 2}, "q3": {"x": 0}}  # q3 has no relevant doc: ignored
    run = {"q1": {"a": 3.0, "z": 2.0, "b": 1.0}}  # q2 returned nothing: counts as 0
    m = evaluate(run, qrels)
    dcg = 1 + 1 / math.log2(4)
    idcg = 1 + 1 / math.log2(3)
    assert m["nDCG@10"] == pytest.approx((dcg / idcg + 0) / 2)
    assert m["Recall@100"] == pytest.approx(0.5)
    assert m["MRR@10"] == pytest.approx(0.5)
    assert m["MAP"] == pytest.approx((1 + 2 / 3) / 2 / 2)


def test_mrr_is_cut_at_10():
    qrels = {"q": {"rel": 1}}
    run = {"q": {**{f"d{i}": 100.0 - i for i in range(10)}, "rel": 1.0}}
    assert evaluate(run, qrels)["MRR@10"] == 0.0
    assert evaluate(run, qrels)["Recall@100"] == 1.0


def test_trec_run_and_truncate(tmp_path):
    run = {"q2": {"b": 1.0, "a": 1.0, "c": 5.0}, "q1": {"x": 0.5}}
    path = write_trec_run(run, tmp_path / "runs" / "r.trec", tag="t")
    assert path.read_text().splitlines() == ["q1 Q0 x 1 0.500000 t", "q2 Q0 c 1 5.000000 t",
                                             "q2 Q0 a 2 1.000000 t", "q2 Q0 b 3 1.000000 t"]
    assert truncate(run, 2)["q2"] == {"c": 5.0, "a": 1.0}
    assert format_table([{"m": "x", "v": 0.5}], ["m", "v"]).splitlines()[2] == "| x | 0.5000 |"


def test_evaluate_retriever_on_tiny(tiny_dir, tiny_home, tmp_path):
    m = evaluate_retriever(tiny_home / "index", BM25Config(), tiny_dir, "dev", run_file=tmp_path / "r.trec",
                           progress=False)
    assert m["queries"] == 7 and m["nDCG@10"] > 0.9  # the tiny queries are easy: a sanity floor
    assert (tmp_path / "r.trec").read_text().count("\n") > 7
    with pytest.raises(InputError, match="no judgements for split 'test'"):
        evaluate_retriever(tiny_home / "index", BM25Config(), tiny_dir, "test", progress=False)


@pytest.mark.slow
def test_scifact_bm25_quality(scifact_dir, tmp_path):
    """Quality regression on SciFact dev: BM25 (k1=0.9, b=0.4, min_token_len 1) nDCG@10 0.7031, R@100 0.9172
    (benchmarks/results/analyzer.md; 0.6998 / 0.9235 with min_token_len 2)."""
    from funnel.crawler.beir import ingest_beir
    from funnel.core.store import DocumentStore
    from funnel.index.analyze import Analyzer
    from funnel.index.builder import build_index

    with DocumentStore(tmp_path / "store.sqlite") as store:
        ingest_beir(scifact_dir, store)
        build_index(store, tmp_path / "index", Analyzer(), progress=False)
    m = evaluate_retriever(tmp_path / "index", BM25Config(), scifact_dir, "dev", progress=False)
    assert m["nDCG@10"] == pytest.approx(0.7031, abs=0.002)
    assert m["Recall@100"] == pytest.approx(0.9172, abs=0.003)

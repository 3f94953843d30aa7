"""`funnel.ranking.compare` and `funnel compare` on a toy case whose numbers are worked out by hand."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from funnel.ranking.compare import compare_runs, paired_t_test, randomisation_test, rank_movement
from funnel.ranking.evaluate import read_trec_run, write_trec_run

# Three queries, one relevant document each.
QRELS = {"q1": {"d1": 1}, "q2": {"d2": 1}, "q3": {"d3": 1, "x": 0}}
# A: q1 relevant at rank 1 (nDCG 1), q2 at rank 2 (1/log2(3)), q3 not retrieved (0)
RUN_A = {"q1": {"d1": 3.0, "x": 2.0}, "q2": {"x": 3.0, "d2": 2.0}, "q3": {"x": 1.0}}
# B: q1 at rank 2, q2 at rank 1, q3 at rank 1
RUN_B = {"q1": {"x": 3.0, "d1": 2.0}, "q2": {"d2": 3.0, "x": 2.0}, "q3": {"d3": 1.0}}
A2 = 1 / math.log2(3)  # nDCG@10 of a single relevant document at rank 2


def test_per_query_deltas_and_lists():
    cmp = compare_runs(RUN_A, RUN_B, QRELS)
    assert cmp.queries == ["q1", "q2", "q3"]
    assert [cmp.delta(q, "nDCG@10") for q in cmp.queries] == pytest.approx([A2 - 1, 1 - A2, 1.0])
    assert cmp.improved() == ["q3", "q2"] and cmp.regressed() == ["q1"]
    assert [r["qid"] for r in cmp.rows()] == ["q1", "q2", "q3"]  # worst regression first
    ndcg, recall = cmp.summary
    assert ndcg.mean_a == pytest.approx((1 + A2) / 3) and ndcg.mean_b == pytest.approx((2 + A2) / 3)
    assert ndcg.delta == pytest.approx(1 / 3)
    assert (ndcg.improved, ndcg.regressed, ndcg.tied) == (2, 1, 0)
    assert (recall.improved, recall.regressed, recall.tied) == (1, 0, 2)
    assert recall.delta == pytest.approx(1 / 3)


def test_paired_t_test_by_hand():
    cmp = compare_runs(RUN_A, RUN_B, QRELS)
    d = np.array([A2 - 1, 1 - A2, 1.0])
    sd = math.sqrt(sum((x - d.mean()) ** 2 for x in d) / 2)
    t = d.mean() / (sd / math.sqrt(3))
    p = 1 - t / math.sqrt(2 + t * t)  # Student's t with 2 degrees of freedom: F(t) = 1/2 + t / (2 sqrt(2 + t^2))
    assert t == pytest.approx(0.84256, abs=1e-4)
    assert cmp.summary[0].p_t_test == pytest.approx(p, abs=1e-9)
    assert paired_t_test(np.array([0.5, 0.5]), np.array([0.5, 0.5])) == 1.0  # identical: no evidence


def test_randomisation_test_by_hand():
    # differences (-a, a, 1): of the 8 sign patterns, |sum| >= 1 for 6 (1, 1, 1 + 2a, each with both signs of 1)
    cmp = compare_runs(RUN_A, RUN_B, QRELS)
    assert cmp.summary[0].p_randomisation == pytest.approx(6 / 8)
    # Recall@100 differences (0, 0, 1): every pattern has |sum| = 1
    assert cmp.summary[1].p_randomisation == pytest.approx(1.0)


def test_sampled_randomisation_is_seeded_and_near_the_exact_value():
    rng = np.random.default_rng(3)
    a, b = rng.random(17), rng.random(17) + 0.1
    p1, p2 = randomisation_test(a, b, 20_000, seed=7), randomisation_test(a, b, 20_000, seed=7)
    assert p1 == p2
    d = b - a
    signs = ((np.arange(2 ** 17)[:, None] >> np.arange(17)) & 1) * 2 - 1
    exact = np.mean(np.abs((signs * d).mean(1)) >= abs(d.mean()) - 1e-9)
    assert p1 == pytest.approx(exact, abs=0.01)


def test_rank_movement():
    rows = rank_movement({"a": 3, "b": 2, "c": 1}, {"c": 3, "a": 2, "z": 1})
    assert rows == [{"doc_id": "c", "rank A": 3, "rank B": 1, "movement": 2},
                    {"doc_id": "a", "rank A": 1, "rank B": 2, "movement": -1},
                    {"doc_id": "z", "rank A": None, "rank B": 3, "movement": None},
                    {"doc_id": "b", "rank A": 2, "rank B": None, "movement": None}]


def test_trec_run_round_trip_and_bad_line(tmp_path):
    from funnel.core.errors import InputError

    path = write_trec_run(RUN_A, tmp_path / "a.trec")
    assert read_trec_run(path) == RUN_A
    bad = tmp_path / "bad.trec"
    bad.write_text("q1 Q0 d1 1 0.5 tag\nq1 Q0 d2 2\n")
    with pytest.raises(InputError, match=r"bad.trec:2: expected 6 columns"):
        read_trec_run(bad)


def test_funnel_compare_prints_the_table(tmp_path, capsys):
    from funnel.cli.main import main

    data = tmp_path / "data"
    (data / "qrels").mkdir(parents=True)
    (data / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n"
                                             + "".join(f"{q}\t{d}\t{g}\n" for q, j in QRELS.items() for d, g in j.items()))
    (data / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": f"text of {q}"}) + "\n" for q in QRELS))
    a, b = write_trec_run(RUN_A, tmp_path / "a.trec"), write_trec_run(RUN_B, tmp_path / "b.trec")
    assert main(["--home", str(tmp_path / "home"), "compare", str(a), str(b), "--data", str(data),
                 "--split", "test"]) == 0
    out = capsys.readouterr().out
    ndcg_row = next(line for line in out.splitlines() if line.startswith("| nDCG@10"))
    cells = [c.strip() for c in ndcg_row.strip("|").split("|")]
    assert cells[3] == "0.3333" and cells[4:7] == ["2", "1", "0"] and cells[8] == "0.7500"
    assert "2 queries improved on nDCG@10" in out and "1 queries regressed on nDCG@10" in out
    assert "text of q3" in out and "(exact: every labelling)" in out
    assert main(["compare", str(a), str(tmp_path / "missing.trec"), "--data", str(data), "--split", "test"]) == 2
    assert "missing.trec: file not found" in capsys.readouterr().err

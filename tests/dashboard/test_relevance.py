"""The relevance pages' numbers (dashboard/relevance.py) and the ratings file (funnel.core.ratings)."""
from __future__ import annotations

import math
import shutil

import pytest

from funnel.dashboard import relevance as rel

QUERY = "Environmental factors can influence the development of breast cancer."  # tiny dev query 381


def test_judgement_labels_and_marks():
    import pandas as pd

    assert [rel.judgement_label(g) for g in (None, 0, 1, 3)] == ["unjudged", "not relevant", "relevant (1)",
                                                                 "relevant (3)"]
    frame = pd.DataFrame({"rank": [1, 2, 3], "doc_id": ["a", "b", "c"]})
    marked = rel.mark_judgements(frame, {"a": 2, "b": 0})
    assert list(marked.columns) == ["rank", "doc_id", "judgement"]
    assert list(marked["judgement"]) == ["relevant (2)", "not relevant", "unjudged"]
    assert rel.mark_judgements(frame, None) is frame


def test_store_judgements_mark_every_stage(full_service):
    j = rel.Judgements.load(full_service.store, full_service.config.paths.judgements, "tiny", "dev")
    assert j.query_id(QUERY) == "381" and j.of(QUERY) == {"18340282": 1}
    assert j.of("a query nobody judged") is None
    result = full_service.search(QUERY, k=10, explain=True, explain_depth=20)
    from funnel.dashboard import inspect_funnel as fi

    for stage, _, _, frame in fi.stage_frames(full_service, result):
        marked = rel.mark_judgements(frame, j.of(QUERY))
        want = ["relevant (1)" if d == "18340282" else "unjudged" for d in frame["doc_id"]]
        assert list(marked["judgement"]) == want, stage


def test_lost_at_names_the_first_stage_without_the_document():
    from funnel.ranking.serving.stages import StageTrace

    trace = [StageTrace("bm25", ["a", "b", "c"], [3, 2, 1], 1.0), StageTrace("coarse", ["a", "b"], [2, 1], 1.0),
             StageTrace("fine", ["a"], [1], 1.0)]
    assert rel.lost_at(trace, {"a": 1, "b": 2, "c": 1, "z": 1, "n": 0}) == {
        "a": "kept", "b": "fine", "c": "coarse", "z": "not recalled (bm25)"}


def test_query_metrics_agree_with_evaluate_pipeline(full_service):
    from funnel.ranking.serving.pipeline import evaluate_pipeline

    j = rel.Judgements.load(full_service.store, full_service.config.paths.judgements, "tiny", "dev")
    frame = rel.query_metrics(full_service, j, "cpu", max_queries=50)
    assert len(frame) == len(j.qrels) and list(frame["nDCG@10"]) == sorted(frame["nDCG@10"])  # worst first
    out = evaluate_pipeline(full_service.pipeline("cpu"), j.texts, j.qrels, k=100, progress=False, warmup=0)
    final = out["stages"][-1]
    assert frame["nDCG@10"].mean() == pytest.approx(final["nDCG@10"], abs=1e-9)
    assert frame["Recall@100"].mean() == pytest.approx(final["Recall@100"], abs=1e-9)
    assert list(frame["relevant"].sort_index()) == [sum(g > 0 for g in j.qrels[q].values()) for q in frame["qid"]]


def test_bm25_explanation_adds_up_to_the_bm25_score(full_service):
    retriever = full_service.retriever
    hits = retriever.search(QUERY, 5)
    for doc_id, score in zip(hits.doc_ids, hits.scores.tolist()):
        frame = rel.bm25_explanation(retriever, QUERY, doc_id)
        assert frame["contribution"].sum() == pytest.approx(score, rel=1e-5)
        matched = frame[frame["tf"] > 0]
        assert len(matched) and (matched["idf"] > 0).all()
        dl, avg, b = frame.attrs["doc_len"], frame.attrs["avg_len"], frame.attrs["b"]
        assert frame["length norm"].iloc[0] == pytest.approx(1 - b + b * dl / avg)
    assert rel.bm25_explanation(retriever, QUERY, "no-such-doc") is None


def test_highlight_marks_analysed_matches_and_escapes():
    from funnel.index.analyze import Analyzer

    an = Analyzer()
    out = rel.highlight_terms("Cancers <b>grow</b>; the cancer cell.", an, set(an("cancer cells")))
    assert out == "<mark>Cancers</mark> &lt;b&gt;grow&lt;/b&gt;; the <mark>cancer</mark> <mark>cell</mark>."


def test_side_by_side_movement():
    frame = rel.side_by_side({"a": 3, "b": 2, "c": 1}, {"c": 3, "a": 2, "z": 1}, {"c": 1}, {"c": "C"})
    assert list(frame["doc_id"]) == ["c", "a", "z", "b"]
    assert list(frame["move"]) == ["↑2", "↓1", "new", "dropped"]
    assert list(frame["judgement"]) == ["relevant (1)", "unjudged", "unjudged", "unjudged"]


def test_ratings_are_trec_qrels_and_replace_a_grade(tmp_path):
    from funnel.core.errors import InputError
    from funnel.core.ratings import rating_query_id, read_ratings, save_rating

    folder = tmp_path / "judgements"
    assert read_ratings(folder) == ({}, {})
    qid = rating_query_id("list  comprehension ")
    assert qid == rating_query_id("list comprehension") and qid.startswith("r-")
    save_rating(folder, qid, "list comprehension", "d1", 2)
    path = save_rating(folder, qid, "list comprehension", "d2", 0)
    save_rating(folder, qid, "list comprehension", "d1", 3)
    assert path.read_text() == f"{qid}\t0\td1\t3\n{qid}\t0\td2\t0\n"
    assert read_ratings(folder) == ({qid: "list comprehension"}, {qid: {"d1": 3, "d2": 0}})
    with pytest.raises(InputError, match="grade must be one of"):
        save_rating(folder, qid, "x", "d1", 4)


def test_funnel_eval_uses_a_new_rating_at_once(full_home, tmp_path, capsys):
    """Ratings under HOME/judgements are a BEIR folder: `funnel eval --split ratings` reads the latest."""
    from funnel.cli.main import main
    from funnel.core.ratings import save_rating

    home = tmp_path / "home"
    shutil.copytree(full_home, home)
    from funnel.index.searcher import Bm25Retriever

    hits = Bm25Retriever.open(home / "index").search(QUERY, 10)
    folder = home / "judgements"
    save_rating(folder, "381", QUERY, hits.doc_ids[0], 3)

    def ndcg() -> float:
        assert main(["-q", "--home", str(home), "eval", "--data", str(folder), "--split", "ratings"]) == 0
        out = capsys.readouterr().out
        assert "1 queries" in out
        return float(next(line for line in out.splitlines() if "nDCG@10" in line).split()[-1])

    assert ndcg() == pytest.approx(1.0)  # the only relevant document is BM25's first
    save_rating(folder, "381", QUERY, hits.doc_ids[0], 0)
    save_rating(folder, "381", QUERY, hits.doc_ids[1], 3)
    assert ndcg() == pytest.approx(1 / math.log2(3), abs=1e-4)  # now at rank 2 (printed to 4 decimals)


def test_text_window_starts_near_the_first_match():
    from funnel.index.analyze import Analyzer

    an = Analyzer()
    text = "navigation " * 300 + "the list comprehension section " + "more " * 300
    out = rel.text_window(text, an, set(an("comprehension")), width=200)
    assert "comprehension" in out and out.startswith("…") and out.endswith("…") and len(out) == 202
    assert rel.text_window("short text", an, {"zzz"}, width=200) == "short text"


def test_concurrent_ratings_are_all_kept(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from funnel.core.ratings import read_ratings, save_rating

    folder = tmp_path / "judgements"
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: save_rating(folder, f"q{i % 3}", f"query {i % 3}", f"d{i}", i % 4), range(40)))
    _, qrels = read_ratings(folder)
    assert sum(len(d) for d in qrels.values()) == 40


def test_judged_ranks_follow_each_stage():
    from funnel.ranking.serving.stages import StageTrace

    trace = [StageTrace("bm25", ["a", "b", "c"], [3, 2, 1], 1.0), StageTrace("coarse", ["b", "a"], [2, 1], 1.0)]
    frame = rel.judged_ranks(trace, {"a": 1, "c": 2, "z": 3, "n": 0}, {"a": "A"})
    assert list(frame["doc_id"]) == ["z", "c", "a"]
    assert frame["bm25"].isna().tolist() == [True, False, False]
    assert frame["coarse"].iloc[2] == 2 and frame["bm25"].iloc[1] == 3
    assert list(frame["lost at"]) == ["not recalled (bm25)", "coarse", "kept"]
    assert frame["title"].iloc[2] == "A"


def test_a_configuration_run_is_that_configuration_s_funnel(full_service):
    """A live configuration (overrides on the served config) gives the run its own pipeline gives, and
    differs from the served one where the overrides change the ranking."""
    from funnel.ranking.serving.pipeline import Pipeline, evaluate_pipeline

    config = full_service.config
    j = rel.Judgements.load(full_service.store, config.paths.judgements, "tiny", "dev")
    seen = []
    bm25_only = rel.configuration_run(config, "cpu", ['pipeline.stages="recall"'], j, max_queries=5,
                                      on_query=lambda i, n: seen.append((i, n)))
    assert seen == [(i, 5) for i in range(1, 6)] and len(bm25_only) == 5
    pipe = Pipeline.from_config(config, "cpu", stages=["recall"])
    direct = evaluate_pipeline(pipe, j.texts, {q: j.qrels[q] for q in bm25_only}, progress=False, warmup=0)["runs"]
    pipe.close()
    assert {q: list(r) for q, r in bm25_only.items()} == {q: list(r) for q, r in direct["bm25"].items()}
    served = rel.configuration_run(config, "cpu", [], j, max_queries=5)
    assert served != bm25_only  # the coarse ranker and the rest reorder BM25's list
    with pytest.raises(Exception, match="unknown key pipeline.nope"):
        rel.configuration_run(config, "cpu", ["pipeline.nope=1"], j)

"""The relevance pages of the Streamlit app (judgements, Queries, Compare, rating) under AppTest."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")
QUERY = "Environmental factors can influence the development of breast cancer."  # tiny dev query 381


@pytest.fixture
def app(work_env):
    at = AppTest.from_file(APP, default_timeout=180).run()
    assert not at.exception, at.exception
    at.sidebar.selectbox(key="judgements").set_value("tiny / dev").run()
    return at


def test_stage_tables_carry_judgements_and_bm25_explanation(app):
    app.text_input(key="query").input(QUERY).run()
    assert not app.exception, app.exception
    tables = [d.value for d in app.dataframe if "judgement" in d.value.columns]
    assert len(tables) == len([e for e in app.expander])
    for t in tables:
        assert set(t["judgement"]) <= {"relevant (1)", "unjudged"}
        assert (t["judgement"] == "relevant (1)").sum() == int("18340282" in set(t["doc_id"]))
    bm25 = next(d.value for d in app.dataframe if "idf" in d.value.columns)
    assert {"term", "tf", "df", "idf", "length norm", "tf part", "contribution"} <= set(bm25.columns)
    assert any("<mark>" in m.value for m in app.markdown)
    ranks = app.dataframe[0].value  # relevant judged documents through the stages
    assert list(ranks["doc_id"]) == ["18340282"] and "lost at" in ranks.columns


def test_rating_is_saved_as_qrels_and_marks_the_result(app, work_env):
    app.text_input(key="query").input("cancer cells").run()
    doc_id = app.selectbox(key="inspect").value
    app.radio(key="rate_grade").set_value(2).run()
    app.button(key="rate_save").click().run()
    assert not app.exception, app.exception
    path = work_env.paths.judgements / "qrels" / "ratings.tsv"
    qid, _, doc, grade = path.read_text().strip().split("\t")
    assert (doc, grade) == (doc_id, "2") and qid.startswith("r-")
    assert any(doc_id in s.value for s in app.success)
    tables = [d.value for d in app.dataframe if "judgement" in d.value.columns]
    assert tables and all(set(t.loc[t["doc_id"] == doc_id, "judgement"]) <= {"relevant (2)"} for t in tables)


def test_queries_page_worst_first_and_opens_a_query(app):
    app.sidebar.radio(key="page").set_value("Queries").run()
    assert not app.exception, app.exception
    frame = app.dataframe[0].value
    assert list(frame["nDCG@10"]) == sorted(frame["nDCG@10"]) and "lost at" in frame.columns
    qid = str(frame["qid"].iloc[-1])
    app.selectbox(key="q_pick").set_value(qid).run()
    app.button(key="q_open").click().run()
    assert not app.exception, app.exception
    assert app.sidebar.radio(key="page").value == "Search"
    assert app.text_input(key="query").value == frame["query"].iloc[-1]


def test_compare_page_switches_runs(app):
    app.sidebar.radio(key="page").set_value("Compare").run()
    assert not app.exception, app.exception
    assert (app.selectbox(key="cmp_a").value, app.selectbox(key="cmp_b").value) == ("bm25-dev.trec", "tfidf-dev.trec")
    summary = app.dataframe[0].value
    assert list(summary["metric"]) == ["nDCG@10", "Recall@100"]
    app.selectbox(key="cmp_b").set_value("bm25-dev.trec").run()
    summary = app.dataframe[0].value
    assert list(summary["B - A"]) == [0.0, 0.0] and list(summary["p (randomisation)"]) == [1.0, 1.0]
    side = app.dataframe[-1].value
    assert set(side["move"]) == {"="}


def test_compare_two_configurations_live(app, work_env):
    """Two configurations run from the page: the served funnel vs recall alone; both runs saved."""
    app.sidebar.radio(key="page").set_value("Compare").run()
    app.radio(key="cmp_mode").set_value("two configurations").run()
    assert not app.exception, app.exception
    app.text_area(key="cfg_set_B").input('pipeline.stages="recall"').run()
    app.number_input(key="cfg_n").set_value(3).run()
    app.button(key="cfg_run").click().run()
    assert not app.exception, app.exception
    summary = app.dataframe[0].value
    assert list(summary["metric"]) == ["nDCG@10", "Recall@100"]
    scored = re.search(r"on (\d+) judged queries", " ".join(m.value for m in app.markdown))
    assert 1 <= int(scored.group(1)) <= 3  # the queries run (less any neither found anything for), not all judged
    per_query = app.dataframe[1].value
    assert 1 <= len(per_query) <= 3  # the 3 queries run, less those neither configuration found anything for
    runs = sorted(p.name for p in work_env.paths.runs.glob("dashboard-cpu-config*.trec"))
    assert runs == ["dashboard-cpu-configA-tiny_dev.trec", "dashboard-cpu-configB-tiny_dev.trec"], runs
    app.text_area(key="cfg_set_B").input("pipeline.nope=1").run()
    app.button(key="cfg_run").click().run()
    assert not app.exception and "unknown key pipeline.nope" in app.error[0].value


def test_attention_layer_and_head_are_selectable(app):
    app.text_input(key="query").input("cancer cells").run()
    assert not app.exception, app.exception
    layers = app.selectbox(key="att_layer")
    assert layers.value == len(layers.options) - 1  # the last layer first
    layers.set_value(0).run()
    app.selectbox(key="att_head").set_value(1).run()
    assert not app.exception, app.exception
    assert any("layer 0 of" in c.value and "head 1 of" in c.value for c in app.caption)


def test_queries_page_saves_its_rankings_as_a_run(app, work_env):
    from funnel.core.store import DocumentStore
    from funnel.ranking.evaluate import evaluate, read_trec_run

    app.sidebar.radio(key="page").set_value("Queries").run()
    frame = app.dataframe[0].value
    app.text_input(key="q_tag").input("my config").run()
    app.button(key="q_save").click().run()
    assert not app.exception, app.exception
    path = work_env.paths.runs / "dashboard-cpu-my_config-tiny_dev.trec"
    assert any(str(path) in s.value for s in app.success)
    run = read_trec_run(path)
    assert sorted(run) == sorted(frame["qid"])
    assert run == app.session_state["_q_frame"].attrs["run"]  # the ranks as written (integers)
    app.sidebar.radio(key="page").set_value("Compare").run()
    assert path.name in app.selectbox(key="cmp_a").options
    with DocumentStore(work_env.paths.store, readonly=True) as store:
        judged = store.qrels("tiny", "dev")
    assert evaluate(run, judged, ("nDCG@10",))["nDCG@10"] == pytest.approx(frame["nDCG@10"].mean(), abs=1e-4)


def test_compare_with_judgements_the_runs_do_not_cover_says_so(app):
    app.sidebar.selectbox(key="judgements").set_value("ratings (dashboard)").run()
    app.sidebar.radio(key="page").set_value("Compare").run()
    assert not app.exception, app.exception
    assert "Neither run ranks a query judged in ratings (dashboard)" in app.warning[0].value

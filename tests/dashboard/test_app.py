"""The Streamlit app run headless by `streamlit.testing.v1.AppTest` over a home with every stage."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")


@pytest.fixture
def app(config_env):
    at = AppTest.from_file(APP, default_timeout=180).run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    return at


def test_search_page_shows_every_stage_and_the_chosen_result(app, full_service):
    app.text_input(key="query").input("cancer cells").run()
    assert not app.exception, app.exception
    want = full_service.search("cancer cells", k=10)
    hits_md = [m.value for m in app.markdown if re.match(r"\d+\. ", m.value)]
    assert len(hits_md) == len(want.hits)
    for md, hit in zip(hits_md, want.hits):
        assert hit.doc_id in md and (hit.title or hit.doc_id) in md
    expanders = [e.label for e in app.expander]
    assert [label.split(":")[0] for label in expanders] == [f"{i + 1}. {s}" for i, s in
                                                             enumerate(full_service.stage_names())]
    # one table per stage, plus the chosen result's features and its link neighbourhood
    assert len(app.dataframe) >= len(expanders) + 1
    assert not app.info, [i.value for i in app.info]  # contributions and attention are both shown
    app.selectbox(key="inspect").set_value(want.hits[1].doc_id).run()
    assert not app.exception and any(want.hits[1].doc_id in m.value for m in app.markdown)


def test_no_result_query_says_so(app):
    app.text_input(key="query").input("zzzqqq unmatched").run()
    assert not app.exception and [w.value for w in app.warning] == ["No document matches this query."]


def test_links_and_evaluation_pages(app, full_service):
    app.sidebar.radio(key="page").set_value("Links & PageRank").run()
    assert not app.exception, app.exception
    assert "3 links in the store." in [c.value for c in app.caption]
    assert app.text_input(key="nb_doc").value  # the top PageRank page, preselected
    app.sidebar.radio(key="page").set_value("Evaluation").run()
    assert app.selectbox(key="eval_set").value == "tiny / dev"
    app.number_input(key="eval_n").set_value(5).run()
    app.button(key="eval_run").click().run()
    assert not app.exception, app.exception
    metrics = app.dataframe[0].value
    assert list(metrics["stage"]) == full_service.stage_names()
    assert set(metrics.columns) == {"stage", "nDCG@10", "Recall@100", "MRR@10"}


def test_missing_home_is_an_error_message_not_a_traceback(tmp_path, monkeypatch):
    import json

    monkeypatch.setenv("FUNNEL_CONFIG_JSON", json.dumps({"paths": {"home": str(tmp_path / "nothing")}}))
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    assert "no index" in at.error[0].value

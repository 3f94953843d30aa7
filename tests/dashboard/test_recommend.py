"""The Recommend page: its tables (`dashboard/recommend.py`) on a hand-made answer and on a real
`RecService` answer, and the page itself run headless (`AppTest`) over a home that only recommends."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from funnel.core.config import load_config
from funnel.dashboard import recommend as dr
from tests.dashboard.conftest import CHROMEDRIVER, CHROMIUM
from tests.rec_home import build_rec_home

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")
STAGES = ["recall", "coarse", "fine", "rerank"]
CATALOGUE = {str(i): {"item_id": str(i), "title": f"Film {i}", "genres": ["Drama"] if i % 2 else ["Comedy", "Drama"]}
             for i in range(1, 10)}

# a hand-made answer: 6 -> 4 -> 3 -> 2 items; item 3 climbs, item 5 drops out at coarse, 9 is pinned in
ANSWER = {
    "user": "u1", "k": 2,
    "items": [{"rank": 1, "item_id": "3", "title": "Film 3", "genres": ["Drama"], "score": 0.9},
              {"rank": 2, "item_id": "9", "title": "Film 9", "genres": ["Drama"], "score": None}],
    "ms": {"recall": 4.0, "coarse": 2.0, "fine": 3.0, "rerank": 0.5},
    "stages": {"recall": ["1", "2", "3", "4", "5", "6"], "coarse": ["2", "3", "1", "6"], "fine": ["3", "2", "1"],
               "rerank": ["3", "9"]},
    "trace": [{"rule": "seen", "removed": []},
              {"rule": "mmr", "lambda": 0.9, "max_per_genre": None,
               "picks": [{"item_id": "3", "relevance": 1.0, "max_genre_similarity": 0.0, "value": 0.9}],
               "genre_cap_skipped": [], "genre_cap_relaxed": []},
              {"rule": "pinned", "slots": {"9": 1}}],
}


def test_stage_frames_show_rank_movement_and_the_final_rank():
    frames = dr.stage_frames(ANSWER, CATALOGUE.get)
    assert [(s, n) for s, _, n, _ in frames] == [("recall", 6), ("coarse", 4), ("fine", 3), ("rerank", 2)]
    assert [ms for _, ms, _, _ in frames] == [4.0, 2.0, 3.0, 0.5]
    recall, coarse, fine, rerank = (f for _, _, _, f in frames)
    assert list(recall["move"]) == [""] * 6 and recall["prev rank"].isna().all()
    assert list(coarse["item_id"]) == ["2", "3", "1", "6"]
    assert list(coarse["move"]) == ["↑1", "↑1", "↓2", "↑2"] and list(coarse["prev rank"]) == [2, 3, 1, 6]
    assert list(fine["move"]) == ["↑1", "↓1", "="]
    assert list(rerank["move"]) == ["=", "new"]  # 9 never reached fine: pinned in
    assert coarse.loc[coarse["item_id"] == "3", "final"].item() == 1 and pd_na(coarse.loc[0, "final"])
    assert list(recall["title"][:2]) == ["Film 1", "Film 2"] and recall.loc[1, "genres"] == "Comedy, Drama"
    assert len(dr.stage_frames(ANSWER, CATALOGUE.get, depth=2)[0][3]) == 2


def pd_na(v) -> bool:
    import pandas as pd

    return v is pd.NA or pd.isna(v)


def test_rank_paths_timing_items_and_history():
    paths = dr.rank_paths(ANSWER)
    assert paths[paths["item_id"] == "3"]["rank"].tolist() == [3, 2, 1, 1]
    assert paths[paths["item_id"] == "9"]["stage"].tolist() == ["4. rerank"]
    timing = dr.stage_timing(ANSWER)
    assert timing["stage"].tolist() == ["1. recall", "2. coarse", "3. fine", "4. rerank"]
    assert timing["candidates"].tolist() == [6, 4, 3, 2]
    items = dr.items_frame(ANSWER)
    assert items["item_id"].tolist() == ["3", "9"] and items["score"].isna().tolist() == [False, True]
    hist = dr.history_frame([{"item_id": "1", "title": "Film 1", "genres": ["Drama"], "ts": 0},
                             {"item_id": "2", "title": "Film 2", "genres": [], "ts": None}])
    assert hist["#"].tolist() == [1, 2] and hist["time"].tolist() == ["1970-01-01 00:00 UTC", ""]
    assert dr.parse_history(" 50, 172;181\n7 ") == ["50", "172", "181", "7"] and dr.parse_history("  ") == []


def test_trace_tables_name_each_rule():
    tables = dr.trace_tables(ANSWER["trace"], CATALOGUE.get)
    notes = [n for n, _ in tables]
    assert notes[0].startswith("seen: 0 candidate(s) removed") and tables[0][1] is None
    assert "lambda 0.9" in notes[1] and "cap none" in notes[1]
    assert tables[1][1]["title"].tolist() == ["Film 3"] and tables[1][1]["MMR value"].tolist() == [0.9]
    assert notes[2].startswith("pinned: 1 item") and tables[2][1]["slot"].tolist() == [1]


@pytest.fixture(scope="module")
def rec_home(tmp_path_factory):
    return build_rec_home(tmp_path_factory.mktemp("rec-dash") / "home")


@pytest.fixture(scope="module")
def rec_service(rec_home):
    from funnel.ranking.rec.service import RecService

    return RecService.load(load_config(home=rec_home))


def test_tables_of_a_real_answer(rec_service):
    result = rec_service.recommend("3", k=5, explain=True)
    frames = dr.stage_frames(result, rec_service.item)
    assert [s for s, _, _, _ in frames] == STAGES
    for (_, _, n, frame), ids in zip(frames, result["stages"].values()):
        assert n == len(ids) == len(frame) and frame["item_id"].tolist() == ids
        assert (frame["title"] != "").all()
    final = frames[-1][3]
    assert final["final"].tolist() == [1, 2, 3, 4, 5] and not (final["move"] == "new").any()
    history = dr.history_frame(rec_service.history("3"))
    assert not set(history["item_id"]) & set(final["item_id"])
    assert dr.trace_tables(result["trace"], rec_service.item)


def test_recommend_page_in_a_home_that_only_recommends(rec_home, rec_service, monkeypatch):
    monkeypatch.setenv("FUNNEL_CONFIG_JSON", json.dumps(load_config(home=rec_home).to_dict()))
    at = AppTest.from_file(APP, default_timeout=180).run()
    assert not at.exception, at.exception
    assert at.sidebar.radio(key="page").options == ["Recommend"]
    at.selectbox(key="rec_user").set_value("3").run()
    at.number_input(key="rec_k").set_value(5).run()
    assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
    want = rec_service.recommend("3", k=5)
    shown = at.dataframe[0].value
    assert shown["item_id"].tolist() == [r["item_id"] for r in want["items"]]
    assert at.dataframe[1].value["item_id"].tolist() == [h["item_id"] for h in rec_service.history("3")]
    assert [e.label.split(":")[0] for e in at.expander] == [f"{i + 1}. {s}" for i, s in enumerate(STAGES)]
    # cold start: a typed history, and an unknown id named
    at.radio(key="rec_mode").set_value("A history (cold start)").run()
    at.text_area(key="rec_history").input("3, 4, 5").run()
    assert not at.exception and not at.error
    assert not set(at.dataframe[0].value["item_id"]) & {"3", "4", "5"}
    at.text_area(key="rec_history").input("3, nope").run()
    assert [e.value for e in at.error] == ["Unknown item ids: nope"]


def test_no_recommend_page_without_a_funnel(config_env):
    at = AppTest.from_file(APP, default_timeout=180).run()
    assert not at.exception, at.exception
    assert "Recommend" not in at.sidebar.radio(key="page").options


@pytest.mark.skipif(not (Path(CHROMEDRIVER).exists() and Path(CHROMIUM).exists()),
                    reason="needs Debian's chromium and chromium-driver; CI installs them")
def test_recommend_page_in_chromium(rec_home, rec_service, browser, tmp_path):
    """The page drawn by a real browser: the first user's list, every stage's expander, the trace."""
    from dataclasses import replace

    from tests.dashboard.conftest import serve_dashboard
    from tests.dashboard.test_browser import _shot_dir, _wait_text
    from tests.servers import free_port

    config = load_config(home=rec_home)
    config = replace(config, serve=replace(config.serve, dashboard_port=free_port()))
    first = str(rec_service.ds.user_ids[0])
    want = rec_service.recommend(first, k=rec_service.default_k)
    server = serve_dashboard(config)
    url = next(server)
    try:
        browser.get(url)
        _wait_text(browser, f"Recommendations ({len(want['items'])})")
        _wait_text(browser, want["items"][0]["title"])
        for i, stage in enumerate(STAGES):
            _wait_text(browser, f"{i + 1}. {stage}:")
        _wait_text(browser, "Rerank trace")
        time.sleep(1.0)
        shot = _shot_dir(tmp_path) / "dashboard_recommend.png"
        assert browser.save_screenshot(str(shot)) and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        server.close()  # runs serve_dashboard's finally: stops the process

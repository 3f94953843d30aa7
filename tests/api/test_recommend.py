"""GET/POST /recommend: a live `funnel serve` over a home that holds only the synthetic interaction log and
a tiny funnel fitted on it (no search index), and the app in-process (TestClient) for validation, cold
start, explain, and a search-only home that does not recommend."""
from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from funnel.core.config import load_config
from tests.api.conftest import _serve
from tests.rec_home import build_rec_home

STAGES = ["recall", "coarse", "fine", "rerank"]


@pytest.fixture(scope="module")
def rec_home(tmp_path_factory):
    """A home with the synthetic log in its store and a funnel fitted on it in models/rec (no index)."""
    return build_rec_home(tmp_path_factory.mktemp("rec-api") / "home")


@pytest.fixture(scope="module")
def rec_service(rec_home):
    from funnel.ranking.rec.service import RecService

    return RecService.load(load_config(home=rec_home))


@pytest.fixture(scope="module")
def rec_client(service, rec_service):
    """Search over the tiny index and recommendation over the synthetic log, in one app."""
    from fastapi.testclient import TestClient

    from funnel.api.app import create_app

    with TestClient(create_app(service, rec_service)) as c:
        yield c


@pytest.fixture(scope="module")
def rec_server(rec_home):
    yield from _serve(rec_home)


def _ids(body) -> list[str]:
    return [r["item_id"] for r in body["items"]]


def test_live_server_recommends_for_a_known_user_without_a_search_index(rec_server, rec_service):
    with httpx.Client(base_url=rec_server, timeout=30) as c:
        health = c.get("/health").json()
        assert health["recommend"] is True and health["docs"] == 0 and health["index_generation"] is None
        resp = c.get("/recommend", params={"user": "1", "k": 5})
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["user"] == "1" and body["k"] == 5 and [r["rank"] for r in body["items"]] == [1, 2, 3, 4, 5]
        assert body["stages"] is None and body["trace"] is None and list(body["ms"]) == STAGES
        assert _ids(body) == _ids(rec_service.recommend("1", k=5))  # the server is the service
        seen = {h["item_id"] for h in rec_service.history("1")}
        assert not seen & set(_ids(body))
        assert c.post("/recommend", json={"user": "1", "k": 5}).json()["items"] == body["items"]
        # search is not served by this home, and says what to build
        miss = c.get("/search", params={"q": "film"})
        assert miss.status_code == 404 and "no index in" in miss.json()["error"]
        assert c.get("/recommend", params={"user": "nobody"}).status_code == 404
        metrics = c.get("/metrics").text
    counts = {}
    for fam in text_string_to_metric_families(metrics):
        if fam.name == "funnel_http_requests":
            for s in fam.samples:
                if s.name.endswith("_total") and s.labels["route"] == "/recommend":
                    counts[(s.labels["method"], s.labels["status"])] = s.value
    assert counts == {("GET", "200"): 1.0, ("POST", "200"): 1.0, ("GET", "404"): 1.0}
    for stage in STAGES:
        assert f'funnel_rec_stage_seconds_count{{stage="{stage}"}} 2.0' in metrics


def test_cold_start_returns_k_unseen_items(rec_client, rec_service):
    history = ["3", "4", "5", "6"]
    for body in ({"history": history, "k": 7}, {"history": [3, 4, 5, 6], "k": 7},
                 {"user": "newcomer", "history": history, "k": 7}):
        resp = rec_client.post("/recommend", json=body)
        assert resp.status_code == 200, resp.text
        got = resp.json()
        assert len(got["items"]) == 7 and len(set(_ids(got))) == 7 and not set(_ids(got)) & set(history)
        assert got["user"] == body.get("user")
        assert all(r["title"] and r["genres"] for r in got["items"])
    # the synthetic log walks item i -> i + 1: after 3..6, item 7 should lead
    assert "7" in _ids(got)[:3]


def test_explain_returns_every_stage(rec_client):
    for resp in (rec_client.get("/recommend", params={"user": "2", "k": 4, "explain": "true"}),
                 rec_client.post("/recommend", json={"history": ["10", "11"], "k": 4, "explain": True})):
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert list(body["stages"]) == STAGES and list(body["ms"]) == STAGES
        assert body["stages"]["rerank"] == _ids(body)
        assert set(body["stages"]["rerank"]) <= set(body["stages"]["fine"]) <= set(body["stages"]["recall"])
        assert len(body["stages"]["recall"]) >= len(body["stages"]["coarse"]) >= len(body["stages"]["fine"])
        assert body["trace"] and all("rule" in t for t in body["trace"])


@pytest.mark.parametrize("method, params, status, field, words", [
    ("GET", {"user": "nobody"}, 404, None, "no user with id 'nobody'"),
    ("POST", {"user": "nobody"}, 404, None, "POST /recommend"),
    ("GET", {}, 422, "user", "missing"),
    ("GET", {"user": "1", "k": 0}, 422, "k", "greater than or equal to 1"),
    ("GET", {"user": "1", "k": 11}, 422, "k", "less than or equal to 10"),
    ("POST", {"user": "1", "k": 0}, 422, "k", "greater than or equal to 1"),
    ("POST", {"history": ["1"], "k": 11}, 422, "k", "less than or equal to 10"),
    ("GET", {"user": "1", "history": "1"}, 422, "history", "accepted: user, history (POST), k, explain"),
    ("POST", {}, 422, "body", "send a history"),
    ("POST", {"history": []}, 422, "history", "at least 1"),
    ("POST", {"history": ["1", "no-such-item", 99999]}, 422, None, "unknown item ids ['no-such-item', '99999']"),
    ("POST", {"history": [True]}, 422, "history.0", "not true/false"),
    ("POST", {"history": None, "user": "1"}, 422, "history", "valid list"),
    ("POST", {"user": "1", "q": "film"}, 422, "q", "unknown parameter"),
])
def test_bad_requests_get_4xx_naming_the_problem(rec_client, method, params, status, field, words):
    resp = (rec_client.get("/recommend", params=params) if method == "GET"
            else rec_client.post("/recommend", json=params))
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert words in body["error"]
    if field is not None:
        assert field in [d["field"] for d in body["detail"]]


def test_openapi_states_the_recommend_limits(rec_client):
    spec = rec_client.get("/openapi.json").json()
    get = spec["paths"]["/recommend"]["get"]
    params = {p["name"]: p for p in get["parameters"]}
    assert set(params) == {"user", "k", "explain"} and params["k"]["schema"]["maximum"] == 10
    assert {"200", "404", "422"} <= set(get["responses"])
    post = spec["paths"]["/recommend"]["post"]
    assert {"200", "404", "413", "422"} <= set(post["responses"])
    assert "cold start" in post["description"]
    head = rec_client.head("/recommend?user=1")
    assert head.status_code == 200 and head.content == b""


def test_a_home_without_a_rec_funnel_says_what_to_build(client):
    resp = client.get("/recommend", params={"user": "1"})
    assert resp.status_code == 404 and "funnel build --task rec" in resp.json()["error"]
    assert client.post("/recommend", json={"history": ["1"]}).status_code == 404
    assert client.get("/health").json()["recommend"] is False
    assert client.get("/search", params={"q": "cancer"}).status_code == 200


def test_a_rec_funnel_that_cannot_load_leaves_search_serving(tiny_home_copy):
    """A funnel folder over a store without an interaction log: search serves, /recommend says why not."""
    from fastapi.testclient import TestClient

    from funnel.api.app import create_app, open_services

    config = load_config(None, [f'paths.home="{tiny_home_copy}"', 'pipeline.recall="bm25"'])
    config.paths.rec_funnel.mkdir(parents=True)
    (config.paths.rec_funnel / "funnel.json").write_text("{}")
    service, rec, problem = open_services(config)
    try:
        assert rec is None and "funnel ingest movielens" in problem
        with TestClient(create_app(service, rec, config=config, rec_problem=problem)) as c:
            resp = c.get("/recommend", params={"user": "1"})
            assert resp.status_code == 404 and problem in resp.json()["error"]
            assert c.get("/search", params={"q": "cancer"}).status_code == 200
    finally:
        service.close()


def test_a_home_with_neither_names_both_builds(tmp_path):
    from funnel.api.app import open_services
    from funnel.core.errors import InputError

    with pytest.raises(InputError, match="no index in .* and no recommendation funnel in .*funnel build --task rec"):
        open_services(load_config(home=tmp_path / "empty"))

"""The query API through the real app: results, validation (4xx with a message, never 5xx), documents,
health, metrics, and concurrent requests against a live `funnel serve`."""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

QUERIES = ["cancer cells", "vitamin D deficiency", "breast cancer risk", "gene expression in tumors",
           "美食 攻略", "antibiotic resistance bacteria", "stem cell therapy", "obesity diabetes"]


def test_get_and_post_agree_with_the_service(client, service):
    for q in QUERIES:
        got = client.get("/search", params={"q": q, "k": 5})
        post = client.post("/search", json={"q": q, "k": 5})
        assert got.status_code == 200 and post.status_code == 200
        assert [h["doc_id"] for h in got.json()["hits"]] == [h["doc_id"] for h in post.json()["hits"]]
        direct = service.rank(q, 5, "cpu")
        assert [h["doc_id"] for h in got.json()["hits"]] == direct.doc_ids[:5]
        body = got.json()
        assert body["k"] == 5 and body["profile"] == "cpu" and body["stages"] is None
        assert [h["rank"] for h in body["hits"]] == list(range(1, len(body["hits"]) + 1))


def test_bm25_only_service_matches_the_retriever(tiny_config):
    from fastapi.testclient import TestClient

    from funnel.api.app import create_app
    from funnel.api.service import SearchService
    from funnel.index.searcher import Bm25Retriever

    retriever = Bm25Retriever.open(tiny_config.paths.index, tiny_config.bm25)
    svc = SearchService.open(tiny_config, use_funnel=False, warm=False)
    with TestClient(create_app(svc)) as c:
        for q in QUERIES:
            hits = c.get("/search", params={"q": q, "k": 7}).json()["hits"]
            want = retriever.search(q, 7)
            assert [h["doc_id"] for h in hits] == list(want.doc_ids)
            assert [h["score"] for h in hits] == pytest.approx([float(s) for s in want.scores], rel=1e-5)
    svc.close()


def test_hits_carry_title_and_snippet_from_the_store(client, service):
    hits = client.get("/search", params={"q": "cancer cells", "k": 3}).json()["hits"]
    assert hits
    docs = service.store.get_many([h["doc_id"] for h in hits])
    for h in hits:
        assert h["title"] == docs[h["doc_id"]].title
        words = [w for w in h["snippet"].replace("…", " ").split() if w]
        assert " ".join(words[:3]) in " ".join(docs[h["doc_id"]].text.split())


def test_explain_shows_every_stage_with_rank_movement(client, service):
    body = client.get("/search", params={"q": "cancer cells", "k": 5, "explain": "true"}).json()
    stages = body["stages"]
    assert [s["stage"] for s in stages] == service.stage_names()
    for prev, cur in zip(stages, stages[1:]):
        prev_rank = {r["doc_id"]: r["rank"] for r in prev["rows"]}
        for row in cur["rows"]:
            if row["doc_id"] in prev_rank:  # rows are cut at k, so a newcomer may come from deeper down
                assert row["prev_rank"] == prev_rank[row["doc_id"]]
    assert all(r["prev_rank"] is None for r in stages[0]["rows"])
    assert [r["doc_id"] for r in stages[-1]["rows"]] == [h["doc_id"] for h in body["hits"]]
    assert body["features"] and all(len(v) == len(body["hits"]) for v in body["features"].values())


@pytest.mark.parametrize("params, field, words", [
    ({"q": ""}, "q", "at least 1"),
    ({"q": "   "}, "q", "empty"),
    ({"q": "x" * 513}, "q", "at most 512"),
    ({"q": "cancer", "k": 0}, "k", "greater than or equal to 1"),
    ({"q": "cancer", "k": 101}, "k", "less than or equal to 100"),
    ({"q": "cancer", "k": "ten"}, "k", "integer"),
    ({"q": "cancer", "profile": "tpu"}, "profile", "cpu"),
    ({"q": "cancer", "explain": "maybe"}, "explain", "boolean"),
    ({"q": "cancer", "limit": 3}, "limit", "unknown parameter"),
    ({"k": 3}, "q", "missing"),
])
def test_bad_parameters_get_422_naming_the_field(client, params, field, words):
    for resp in (client.get("/search", params=params), client.post("/search", json=params)):
        assert resp.status_code == 422, resp.text
        body = resp.json()
        assert field in [d["field"] for d in body["detail"]]
        assert words in body["error"]


def test_longest_allowed_query_is_accepted(client):
    assert client.get("/search", params={"q": "cancer " * 73}).status_code == 200  # 511 characters


@pytest.mark.parametrize("content", [b"{bad json", b"", b"[1, 2]", b'"cancer"', b'{"q": "a", "k": 3,}', b"\xff\xfe", b"\x80{\x00\xc3"])
def test_bad_json_bodies_get_422(client, content):
    resp = client.post("/search", content=content, headers={"content-type": "application/json"})
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]


def test_document_endpoint(client, service):
    doc_id = client.get("/search", params={"q": "cancer"}).json()["hits"][0]["doc_id"]
    body = client.get(f"/doc/{doc_id}").json()
    doc = service.store.get(doc_id)
    assert (body["doc_id"], body["title"], body["text"]) == (doc.doc_id, doc.title, doc.text)
    missing = client.get("/doc/no-such-doc")
    assert missing.status_code == 404 and "no-such-doc" in missing.json()["error"]
    assert client.get(f"/doc/{doc_id}", params={"x": 1}).status_code == 422


def test_health_and_metrics(client, service):
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["docs"] == service.n_docs == 50
    assert health["profiles"] == list(service.profiles) and health["index_generation"] >= 1
    assert client.get("/health", params={"verbose": 1}).status_code == 422

    def count(route: str, status: str) -> float:
        text = client.get("/metrics").text
        for fam in text_string_to_metric_families(text):
            if fam.name == "funnel_http_requests":
                return sum(s.value for s in fam.samples if s.name.endswith("_total")
                           and s.labels["route"] == route and s.labels["status"] == status)
        return 0.0

    ok, bad = count("/search", "200"), count("/search", "422")
    client.get("/search", params={"q": "cancer"})
    client.get("/search", params={"q": ""})
    client.get("/search", params={"q": ""})
    assert count("/search", "200") == ok + 1 and count("/search", "422") == bad + 2
    text = client.get("/metrics").text
    assert f'funnel_stage_seconds_count{{profile="cpu",stage="{service.stage_names()[0]}"}}' in text
    assert "funnel_index_docs 50.0" in text


def test_openapi_states_the_limits(client):
    spec = client.get("/openapi.json").json()
    params = {p["name"]: p for p in spec["paths"]["/search"]["get"]["parameters"]}
    assert set(params) == {"q", "k", "profile", "explain"}
    assert params["q"]["schema"]["maxLength"] == 512 and params["k"]["schema"]["maximum"] == 100
    assert client.get("/docs").status_code == 200


def test_docs_page_and_its_assets_are_served_without_a_cdn(client):
    page = client.get("/docs")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "cdn" not in page.text.lower() and "/openapi.json" in page.text
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        assert f"/docs-assets/{asset}" in page.text
        got = client.get(f"/docs-assets/{asset}")
        assert got.status_code == 200 and len(got.content) > 10_000  # the real Swagger UI files
    assert "/docs" not in client.get("/openapi.json").json()["paths"]


def test_live_server_answers_concurrent_clients_like_one(live_server):
    with httpx.Client(base_url=live_server, timeout=30) as c:
        want = {q: c.get("/search", params={"q": q, "k": 10}).json()["hits"] for q in QUERIES}

    def worker(i: int) -> list[tuple[str, list]]:
        out = []
        with httpx.Client(base_url=live_server, timeout=30) as c:
            for j in range(12):
                q = QUERIES[(i + j) % len(QUERIES)]
                resp = c.post("/search", json={"q": q, "k": 10})
                assert resp.status_code == 200, resp.text
                out.append((q, resp.json()["hits"]))
        return out

    with ThreadPoolExecutor(8) as pool:
        results = [r for rs in pool.map(worker, range(8)) for r in rs]
    assert len(results) == 96
    for q, hits in results:
        assert json.dumps(hits) == json.dumps(want[q])


def test_metrics_sum_over_workers(live_server_2_workers):
    """With --workers 2, each request lands on either process; /metrics counts them all, whichever answers."""
    def searches(c) -> float:
        for fam in text_string_to_metric_families(c.get("/metrics").text):
            if fam.name == "funnel_http_requests":
                return sum(s.value for s in fam.samples if s.name.endswith("_total") and s.labels["route"] == "/search")
        return 0.0

    with httpx.Client(base_url=live_server_2_workers, timeout=30) as c:
        before = searches(c)
    for _ in range(20):  # a fresh connection each time, so the kernel spreads them over both workers
        with httpx.Client(base_url=live_server_2_workers, timeout=30) as c:
            assert c.get("/search", params={"q": "cancer"}).status_code == 200
    for _ in range(5):  # every worker's answer sums over both
        with httpx.Client(base_url=live_server_2_workers, timeout=30) as c:
            assert searches(c) == before + 20
            assert "funnel_index_docs 50.0" in c.get("/metrics").text


def test_oversized_body_gets_413(client):
    from funnel.api.app import MAX_BODY_BYTES

    resp = client.post("/search", content=b'{"q": "' + b"a" * MAX_BODY_BYTES + b'"}',
                       headers={"content-type": "application/json"})
    assert resp.status_code == 413 and "bytes" in resp.json()["error"]
    assert client.post("/search", json={"q": "cancer"}).status_code == 200


def test_serve_without_an_index_is_a_clear_cli_error(tmp_path, capsys):
    from funnel.cli.main import main

    assert main(["-q", "--home", str(tmp_path / "empty"), "serve"]) == 2
    err = capsys.readouterr().err
    assert "error: no index in" in err and "funnel index" in err


def _chunks(n_bytes: int, size: int = 4096):
    """A body sent chunked (no Content-Length): the limit must hold while it streams."""
    for start in range(0, n_bytes, size):
        yield b"x" * min(size, n_bytes - start)


def test_chunked_oversized_body_gets_413(client, live_server):
    from funnel.api.app import MAX_BODY_BYTES

    resp = client.post("/search", content=_chunks(MAX_BODY_BYTES + 10_000), headers={"content-type": "application/json"})
    assert resp.status_code == 413 and resp.json()["error"] == f"request body over {MAX_BODY_BYTES} bytes"
    resp = httpx.post(f"{live_server}/search", content=_chunks(MAX_BODY_BYTES * 4),
                      headers={"content-type": "application/json"}, timeout=30)
    assert resp.status_code == 413 and "bytes" in resp.json()["error"]
    assert httpx.post(f"{live_server}/search", json={"q": "cancer"}, timeout=30).status_code == 200


def test_k_with_thousands_of_digits_gets_a_422_about_k(client, service):
    max_k = service.config.serve.max_k
    for resp in (client.get("/search", params={"q": "cell", "k": "9" * 5000}),
                 client.post("/search", content=b'{"q": "cell", "k": ' + b"9" * 5000 + b"}",
                             headers={"content-type": "application/json"})):
        assert resp.status_code == 422, resp.text
        assert f"expected k from 1 to {max_k}" in resp.json()["error"] and "UTF-8" not in resp.json()["error"]


def test_head_and_allow(client):
    for path in ("/search?q=cell", "/health", "/metrics", "/doc/nope"):
        get, head = client.get(path), client.head(path)
        assert head.status_code == get.status_code != 405, path
        assert head.content == b"" and head.headers.get("content-type") == get.headers.get("content-type")
    for method, path, allowed in (("DELETE", "/search", "GET, HEAD, POST"), ("PUT", "/health", "GET, HEAD"),
                                  ("POST", "/doc/x", "GET, HEAD"), ("OPTIONS", "/search", "GET, HEAD, POST")):
        resp = client.request(method, path)
        assert resp.status_code == 405 and resp.headers["allow"] == allowed, (method, path, resp.headers)
        assert resp.json()["error"] == f"method {method} is not allowed on {path}; allowed: {allowed}"

"""The API serves the index generation it has loaded, and swaps in a newly published one without a restart;
a request keeps the generation it started with, which is released when the last such request ends."""
from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from funnel.api.app import create_app
from funnel.api.service import SearchService, index_generation
from funnel.core.config import load_config
from funnel.core.store import Document, DocumentStore
from funnel.index.analyze import Analyzer
from funnel.index.builder import build_index

NEW_WORD = "zyzzogeton"


def _publish_new_generation(home) -> None:
    with DocumentStore(home / "store.sqlite") as store:
        store.put_docs([Document(doc_id="new-doc", title="late arrival", text=f"a {NEW_WORD} beetle page",
                                 source="tiny")])
        build_index(store, home / "index", Analyzer(), progress=False)


def _service(home, check_s: float) -> SearchService:
    config = load_config(None, [f'paths.home="{home}"', 'pipeline.recall="bm25"', f"serve.reload_check_s={check_s}"])
    return SearchService.open(config)


def test_health_reports_the_served_generation_not_the_one_on_disk(tiny_home_copy):
    service = _service(tiny_home_copy, 3600)  # no reload within the test
    try:
        with TestClient(create_app(service)) as client:
            served = client.get("/health").json()["index_generation"]
            _publish_new_generation(tiny_home_copy)
            assert index_generation(tiny_home_copy / "index") == served + 1
            assert client.get("/health").json()["index_generation"] == served
            assert client.get("/search", params={"q": NEW_WORD}).json()["hits"] == []
    finally:
        service.close()


def test_new_generation_is_picked_up_without_a_restart(tiny_home_copy):
    service = _service(tiny_home_copy, 0)  # look on every request
    try:
        with TestClient(create_app(service)) as client:
            before = client.get("/health").json()
            _publish_new_generation(tiny_home_copy)
            deadline = time.monotonic() + 60
            while client.get("/health").json()["index_generation"] == before["index_generation"]:
                assert time.monotonic() < deadline, "the new generation was never served"
                time.sleep(0.05)
            after = client.get("/health").json()
            assert after["index_generation"] == before["index_generation"] + 1 and after["docs"] == before["docs"] + 1
            hits = client.get("/search", params={"q": NEW_WORD}).json()["hits"]
            assert [h["doc_id"] for h in hits] == ["new-doc"] and hits[0]["title"] == "late arrival"
            assert f"funnel_index_docs {after['docs']}.0" in client.get("/metrics").text
    finally:
        service.close()


def test_a_request_keeps_its_generation_until_it_ends(tiny_home_copy):
    service = _service(tiny_home_copy, 0)
    try:
        with service._using() as old:  # a request in flight across the publish
            _publish_new_generation(tiny_home_copy)
            service.check_for_new_index(wait=True)
            assert service.index_generation() == old.generation + 1 and service.reloads == 1
            assert old.retired and not old.closed  # still in use: not released under the request
            assert service._search(old, NEW_WORD, 5, "cpu", False, None).hits == []  # its own snapshot
        assert old.closed  # the last request using it ended
        assert [h.doc_id for h in service.search(NEW_WORD, k=5).hits] == ["new-doc"]
    finally:
        service.close()


def test_a_broken_new_generation_keeps_the_old_one_serving(tiny_home_copy):
    service = _service(tiny_home_copy, 0)
    try:
        served = service.index_generation()
        (tiny_home_copy / "index" / "manifest.json").write_text("{not json", encoding="utf-8")
        service.check_for_new_index(wait=True)
        assert service.index_generation() == served
        assert service.search("cell", k=3).hits  # still answering from the loaded generation
    finally:
        service.close()


@pytest.mark.parametrize("q", ["\x85", "\x1c", "a\x85"])
def test_query_the_schema_allows_is_accepted(client, q):
    """The schema's pattern \\S is an ECMAScript regex: U+0085 and U+001C are not blank there."""
    assert client.get("/search", params={"q": q}).status_code == 200
    assert client.post("/search", json={"q": q}).status_code == 200
    assert client.get("/search", params={"q": "\u3000 \t"}).status_code == 422

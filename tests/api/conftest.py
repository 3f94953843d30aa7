"""Fixtures for the API tests: a service over the tiny index, the app through TestClient, and a live
`funnel serve` process on 127.0.0.1."""
from __future__ import annotations

import pytest

from funnel.core.config import load_config
from tests.servers import funnel_serve


@pytest.fixture(scope="session")
def tiny_config(tiny_home):
    # BM25 recall: the tiny home has no dense index, and this keeps the API tests off the dense module
    return load_config(None, [f'paths.home="{tiny_home}"', 'pipeline.recall="bm25"'])


@pytest.fixture(scope="session")
def service(tiny_config):
    from funnel.api.service import SearchService

    svc = SearchService.open(tiny_config)
    yield svc
    svc.close()


@pytest.fixture(scope="session")
def client(service):
    from fastapi.testclient import TestClient

    from funnel.api.app import create_app

    with TestClient(create_app(service)) as c:
        yield c


def _serve(tiny_home, *extra: str):
    """`funnel serve` in its own process, as a user starts it; yields its base URL."""
    with funnel_serve(tiny_home, extra, ("--set", 'pipeline.recall="bm25"')) as server:
        yield server.url


@pytest.fixture(scope="session")
def live_server(tiny_home):
    yield from _serve(tiny_home)


@pytest.fixture(scope="module")
def live_server_2_workers(tiny_home):
    """Two uvicorn worker processes behind one port."""
    yield from _serve(tiny_home, "--workers", "2")

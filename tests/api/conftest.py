"""Fixtures for the API tests: a service over the tiny index, the app through TestClient, and a live
`funnel serve` process on 127.0.0.1."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import pytest

from funnel.core.config import load_config
from funnel.core.procs import stop_process
from tests.servers import free_port


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
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "funnel.cli.main", "-q", "--home", str(tiny_home),
                             "--set", 'pipeline.recall="bm25"', "serve", "--port", str(port), *extra],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"funnel serve exited early:\n{proc.stdout.read().decode(errors='replace')}")
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("funnel serve did not answer /health within 90 s")
        time.sleep(0.2)
    yield base
    stop_process(proc)


@pytest.fixture(scope="session")
def live_server(tiny_home):
    yield from _serve(tiny_home)


@pytest.fixture(scope="module")
def live_server_2_workers(tiny_home):
    """Two uvicorn worker processes behind one port."""
    yield from _serve(tiny_home, "--workers", "2")

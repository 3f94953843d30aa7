"""Shared fixtures: the 50-document BEIR corpus in tests/data/tiny (45 SciFact abstracts + 5 Chinese
documents), a store and index built from it once per session, and SciFact itself for slow tests."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "tests" / "data" / "tiny"


def _scifact() -> Path | None:
    for cand in (os.environ.get("FUNNEL_SCIFACT"), ROOT.parent / "shared" / "data" / "scifact",
                 ROOT / "data" / "scifact"):
        if cand and (Path(cand) / "corpus.jsonl").exists():
            return Path(cand)
    return None


@pytest.fixture(scope="session")
def tiny_dir() -> Path:
    return TINY


@pytest.fixture(scope="session")
def scifact_dir() -> Path:
    path = _scifact()
    if path is None:
        pytest.skip("SciFact not found: set FUNNEL_SCIFACT or place it at ../shared/data/scifact")
    return path


@pytest.fixture(scope="session")
def tiny_home(tmp_path_factory) -> Path:
    """A Funnel home with the tiny corpus ingested and indexed (read-only for tests: copy to modify)."""
    from funnel.crawler.beir import ingest_beir
    from funnel.core.store import DocumentStore
    from funnel.index.analyze import Analyzer
    from funnel.index.builder import build_index

    home = tmp_path_factory.mktemp("tiny_home")
    with DocumentStore(home / "store.sqlite") as store:
        ingest_beir(TINY, store, name="tiny")
        build_index(store, home / "index", Analyzer(), progress=False)
    return home


@pytest.fixture
def tiny_home_copy(tiny_home, tmp_path) -> Path:
    dst = tmp_path / "home"
    shutil.copytree(tiny_home, dst)
    return dst


@pytest.fixture
def one_thread():
    """One torch thread: a tiny model gains nothing from more, and spinning threads crawl on a busy machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

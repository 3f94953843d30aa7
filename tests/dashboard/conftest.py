"""A Funnel home with every stage the dashboard can show: the tiny index, a coarse LightGBM model
trained on the tiny judgements, a tiny (untrained) cross-encoder, a link graph and PageRank."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from funnel.core.config import load_config

CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def _home_config(home):
    return load_config(None, [f'paths.home="{home}"', 'pipeline.recall="bm25"', "coarse.n_estimators=20",
                              "coarse.min_child_samples=2", "coarse.early_stopping=5", "coarse.train_depth=30"])


@pytest.fixture(scope="session")
def full_home(tiny_home, tiny_dir, tmp_path_factory):
    from funnel.core.store import Document, Link, DocumentStore
    from funnel.index.pagerank import save_pagerank
    from funnel.ranking.models.backbone import load_tokenizer
    from funnel.ranking.models.cross_encoder import build_cross_encoder, save_cross_encoder
    from funnel.ranking.training.train_coarse import train_coarse

    home = tmp_path_factory.mktemp("dash") / "home"
    shutil.copytree(tiny_home, home)
    config = _home_config(home)
    train_coarse(config, tiny_dir, progress=False)
    save_cross_encoder(build_cross_encoder("tiny"), load_tokenizer("tiny"), config.paths.models / "cross-encoder",
                       {"max_length": 64})
    with DocumentStore(config.paths.store) as store:  # a small link graph over three corpus documents
        ids = sorted(_doc_ids(store))[:3]
        docs = store.get_many(ids)
        hub = docs[ids[0]]
        hub.outlinks = [Link(ids[1], "first"), Link(ids[2], "second")]
        back = docs[ids[1]]
        back.outlinks = [Link(ids[0], "home")]
        store.put_docs([hub, back])
    save_pagerank(home / "features" / "pagerank.parquet", ids, [0.5, 0.3, 0.2])
    return home


def _doc_ids(store):
    return [d.doc_id for d in store.iter_docs()]


@pytest.fixture(scope="session")
def full_config(full_home):
    return _home_config(full_home)


@pytest.fixture(scope="session")
def full_service(full_config):
    from funnel.api.service import SearchService

    svc = SearchService.open(full_config)
    yield svc
    svc.close()


@pytest.fixture
def config_env(full_config, monkeypatch):
    monkeypatch.setenv("FUNNEL_CONFIG_JSON", json.dumps(full_config.to_dict()))
    return full_config


@pytest.fixture
def work_home(full_home, tiny_dir, tmp_path):
    """A copy of the full home (ratings written here stay here) with two saved runs in HOME/runs:
    BM25 and TF-IDF over the tiny dev queries."""
    from dataclasses import replace

    from funnel.ranking.evaluate import evaluate_retriever

    home = tmp_path / "home"
    shutil.copytree(full_home, home)
    config = _home_config(home)
    for scorer in ("bm25", "tfidf"):
        evaluate_retriever(config.paths.index, replace(config.bm25, scorer=scorer), tiny_dir, "dev", k=100,
                           run_file=config.paths.runs / f"{scorer}-dev.trec", progress=False)
    return home


@pytest.fixture
def work_env(work_home, monkeypatch):
    config = _home_config(work_home)
    monkeypatch.setenv("FUNNEL_CONFIG_JSON", json.dumps(config.to_dict()))
    return config


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless Debian Chromium driven by selenium (the browser tests skip when it is absent)."""
    if not (Path(CHROMEDRIVER).exists() and Path(CHROMIUM).exists()):
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install -y chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--window-size=1400,1800",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def serve_dashboard(config):
    """Start `funnel dashboard` for `config` and wait until Streamlit answers its health check; yields
    the base URL and stops the process afterwards (a generator for module fixtures)."""
    import subprocess
    import time
    import urllib.request

    from funnel.core.procs import stop_process
    from funnel.dashboard.launch import run_dashboard

    proc = run_dashboard(config, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{config.serve.dashboard_port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as resp:
                if resp.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail("the dashboard did not come up within 90 s")
        time.sleep(0.5)
    try:
        yield base
    finally:
        stop_process(proc)


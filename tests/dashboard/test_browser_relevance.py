"""The relevance pages in a real headless Chromium (selenium + Debian's chromium/chromedriver): open
every page, pick a query on Queries and open it, switch the comparison on Compare, rate a result on
Search and find the new judgement in HOME/judgements/qrels/ratings.tsv.

Screenshots go to the test's tmp folder, or to ``$FUNNEL_SCREENSHOT_DIR`` when set. Skipped only when
chromium or chromedriver is absent; CI installs both.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from tests.dashboard.conftest import CHROMEDRIVER, CHROMIUM, _home_config, serve_dashboard
from tests.dashboard.test_browser import _shot_dir, _wait_text
from tests.servers import free_port

pytestmark = pytest.mark.skipif(not (Path(CHROMEDRIVER).exists() and Path(CHROMIUM).exists()),
                                reason="needs Debian's chromium and chromium-driver (apt-get install -y chromium "
                                       "chromium-driver); CI installs them")
TINY = Path(__file__).resolve().parents[1] / "data" / "tiny"
QUERY = "Environmental factors can influence the development of breast cancer."  # tiny dev query 381


@pytest.fixture(scope="module")
def rated_config(full_home, tiny_dir, tmp_path_factory):
    """A copy of the full home (the ratings land here) with BM25 and TF-IDF runs of the dev queries."""
    from dataclasses import replace

    from funnel.ranking.evaluate import evaluate_retriever

    home = tmp_path_factory.mktemp("rated") / "home"
    shutil.copytree(full_home, home)
    config = _home_config(home)
    for scorer in ("bm25", "tfidf"):
        evaluate_retriever(config.paths.index, replace(config.bm25, scorer=scorer), tiny_dir, "dev", k=100,
                           run_file=config.paths.runs / f"{scorer}-dev.trec", progress=False)
    return replace(config, serve=replace(config.serve, dashboard_port=free_port()))


@pytest.fixture(scope="module")
def url(rated_config):
    yield from serve_dashboard(rated_config)


def _click(driver, xpath: str, timeout: float = 60):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    el = WebDriverWait(driver, timeout).until(ec.element_to_be_clickable((By.XPATH, xpath)))
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", el)
    el.click()
    return el


def _page(driver, name: str) -> None:
    _click(driver, f"//section[@data-testid='stSidebar']//label[normalize-space(.)={name!r}]")


def _choose(driver, label: str, option: str) -> None:
    """Pick `option` in the Streamlit selectbox labelled `label` (type it into its combobox, Enter)."""
    from selenium.webdriver.common.keys import Keys

    box = _click(driver, f"//div[@data-testid='stSelectbox'][.//label[normalize-space(.)={label!r}]]//input")
    box.send_keys(option)
    time.sleep(0.3)
    box.send_keys(Keys.ENTER)


def _click_first_row(driver) -> None:
    """Click the row marker of the first row of the page's first table (a canvas: no DOM per cell)."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    grid = driver.find_element(By.CSS_SELECTOR, "[data-testid='stDataFrame']")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", grid)
    time.sleep(0.5)
    w, h = grid.size["width"], grid.size["height"]
    ActionChains(driver).move_to_element_with_offset(grid, -w // 2 + 18, -h // 2 + 36 + 17).click().perform()


def test_pages_query_comparison_and_rating_in_chromium(url, browser, rated_config, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    out = _shot_dir(tmp_path)
    browser.get(url)
    _wait_text(browser, "Type a query to see how every stage ranks it.")

    # Queries: every judged dev query, worst first; pick the best one and open it on Search
    _page(browser, "Queries")
    _wait_text(browser, "queries, worst first")
    _choose(browser, "Or choose a query", "381")
    _click(browser, "//button[normalize-space(.)='Open on the Search page']")
    _wait_text(browser, "Judged query 381")
    _wait_text(browser, "relevant (1)")
    box = browser.find_element(By.CSS_SELECTOR, "input[aria-label='Query']")
    assert box.get_attribute("value") == QUERY
    time.sleep(1.0)
    assert browser.save_screenshot(str(out / "dashboard_judged.png"))

    # Search: rate the first result 3 and find it in the qrels file
    _click(browser, "//label[normalize-space(.)='3 perfect']")
    _click(browser, "//button[normalize-space(.)='Save rating']")
    _wait_text(browser, "Saved: query 381")
    _wait_text(browser, "relevant (3)")
    lines = (rated_config.paths.judgements / "qrels" / "ratings.tsv").read_text().splitlines()
    assert len(lines) == 1 and lines[0].startswith("381\t0\t") and lines[0].endswith("\t3")
    queries = (rated_config.paths.judgements / "queries.jsonl").read_text()
    assert '"381"' in queries and "breast cancer" in queries
    _wait_text(browser, "BM25 per query term")
    WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".funnel-doc mark"))
    h = browser.find_element(By.XPATH, "//*[contains(normalize-space(.), 'BM25 per query term')][not(*)]")
    browser.execute_script("arguments[0].scrollIntoView();", h)
    time.sleep(1.0)
    assert browser.save_screenshot(str(out / "dashboard_bm25.png"))

    # Queries again: the table is sorted worst first; clicking its first row opens that query
    _page(browser, "Queries")
    _wait_text(browser, "queries, worst first")
    time.sleep(1.5)
    assert browser.save_screenshot(str(out / "dashboard_queries.png"))
    _click_first_row(browser)
    _wait_text(browser, "Judged query")
    texts = {json.loads(line)["text"] for line in (TINY / "queries.jsonl").read_text().splitlines()}
    assert browser.find_element(By.CSS_SELECTOR, "input[aria-label='Query']").get_attribute("value") in texts

    # Compare: bm25 vs tfidf, then switch B to bm25 itself (no difference at all)
    _page(browser, "Compare")
    _wait_text(browser, "bm25-dev.trec vs tfidf-dev.trec")
    _wait_text(browser, "Both rankings of")
    time.sleep(1.5)
    assert browser.save_screenshot(str(out / "dashboard_compare.png"))
    _choose(browser, "Run B", "bm25-dev.trec")
    _wait_text(browser, "bm25-dev.trec vs bm25-dev.trec")
    _wait_text(browser, "0 improved, 0 regressed")

    # the remaining pages open too
    _page(browser, "Links & PageRank")
    _wait_text(browser, "Top pages by PageRank")
    _page(browser, "Evaluation")
    _wait_text(browser, "Pruning curve")
    for name in ("dashboard_judged.png", "dashboard_bm25.png", "dashboard_queries.png", "dashboard_compare.png"):
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000

"""The dashboard rendered by a real headless Chromium (selenium + Debian's chromium/chromedriver):
type a query, wait for the results and the per-stage tables, take screenshots.

Screenshots go to the test's tmp folder, or to ``$FUNNEL_SCREENSHOT_DIR`` when set (that is how
docs/screenshots/ is refreshed). Skipped only when chromium or chromedriver is absent; CI installs both.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.dashboard.conftest import CHROMEDRIVER, CHROMIUM, serve_dashboard
from tests.servers import free_port

pytestmark = pytest.mark.skipif(not (Path(CHROMEDRIVER).exists() and Path(CHROMIUM).exists()),
                                reason="needs Debian's chromium and chromium-driver (apt-get install -y chromium "
                                       "chromium-driver); CI installs them")


@pytest.fixture(scope="module")
def dashboard_url(full_config):
    from dataclasses import replace

    config = replace(full_config, serve=replace(full_config.serve, dashboard_port=free_port()))
    yield from serve_dashboard(config)


def _shot_dir(tmp_path: Path) -> Path:
    out = Path(os.environ.get("FUNNEL_SCREENSHOT_DIR") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    return out


def _wait_text(driver, text: str, timeout: float = 90):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(
        ec.presence_of_element_located((By.XPATH, f"//*[contains(normalize-space(.), {text!r})]")))


def test_dashboard_renders_a_query_in_chromium(dashboard_url, browser, full_service, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    query = "cancer cells"
    want = full_service.search(query, k=10)
    browser.get(dashboard_url)
    box = WebDriverWait(browser, 90).until(
        ec.element_to_be_clickable((By.CSS_SELECTOR, "input[aria-label='Query']")))
    box.send_keys(query, Keys.ENTER)
    _wait_text(browser, "Final results (10)")
    _wait_text(browser, want.hits[0].title[:40])
    for i, stage in enumerate(full_service.stage_names()):
        _wait_text(browser, f"{i + 1}. {stage}:")
    WebDriverWait(browser, 60).until(  # the charts (altair/vega) have drawn
        lambda d: len(d.find_elements(By.CSS_SELECTOR, "canvas, svg.marks")) >= 2)
    time.sleep(1.0)
    out = _shot_dir(tmp_path)
    assert browser.save_screenshot(str(out / "dashboard_search.png"))
    for heading, name in (("Each stage's ranking", "dashboard_stages.png"), ("Inspect a result", "dashboard_inspect.png")):
        h3 = browser.find_element(By.XPATH, f"//h3[contains(normalize-space(.), {heading!r})]")
        browser.execute_script("arguments[0].scrollIntoView();", h3)
        if name == "dashboard_inspect.png":
            _wait_text(browser, "LightGBM feature contributions")
            WebDriverWait(browser, 60).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "canvas, svg.marks")) >= 4)
        time.sleep(1.0)
        assert browser.save_screenshot(str(out / name))
    browser.find_element(By.XPATH, "//label[contains(normalize-space(.), 'Links & PageRank')]").click()
    _wait_text(browser, "Top pages by PageRank")
    _wait_text(browser, "3 links in the store.")
    time.sleep(1.5)
    assert browser.save_screenshot(str(out / "dashboard_pagerank.png"))
    names = ("dashboard_search.png", "dashboard_stages.png", "dashboard_inspect.png", "dashboard_pagerank.png")
    assert len({(out / n).read_bytes() for n in names}) == len(names)  # four different views
    for name in names:
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000  # a rendered page, not a blank one

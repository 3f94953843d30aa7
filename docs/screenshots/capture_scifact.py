"""Screenshots of the dashboard on a funnel trained by `funnel build` on SciFact (not the tiny test model),
taken in headless Chromium after each page has rendered.

    .venv/bin/funnel --home HOME build --data ../shared/data/scifact
    .venv/bin/python docs/screenshots/capture_scifact.py HOME ../shared/data/scifact

Picks the dev query (of the first 60) whose relevant document climbs most from the recall stage to the
final list (so the stage tables show rank movement), opens it on the Search page with the SciFact dev
judgements, then the Queries page (worst first), and the Compare page running two configurations live
(the served funnel vs recall + coarse only). Saves dashboard_scifact_{stages,inspect,queries,compare}.png
next to this script. Needs Debian's chromium and chromium-driver.
"""
from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from dataclasses import replace
from pathlib import Path

from funnel.core.config import load_config
from funnel.core.judgements import read_qrels, read_queries
from funnel.core.procs import stop_process
from funnel.dashboard.launch import run_dashboard
from funnel.ranking.serving.pipeline import Pipeline

OUT = Path(__file__).resolve().parent


def climbing_query(config, data: Path, n: int = 60) -> tuple[str, str]:
    """(query id, text) of the dev query whose best relevant document gains most ranks from recall to
    the final list, among the first `n` judged dev queries."""
    queries, qrels = read_queries(data), read_qrels(data, "dev")
    pipe = Pipeline.from_config(config, "cpu")
    best = (-1, None)
    try:
        for qid in sorted(q for q in qrels if q in queries)[:n]:
            res = pipe.search(queries[qid], 10)
            rel = {d for d, g in qrels[qid].items() if g > 0}
            first, last = res.trace[0].doc_ids, res.doc_ids
            gains = [list(first).index(d) - list(last).index(d) for d in rel if d in last and d in first]
            if gains and max(gains) > best[0]:
                best = (max(gains), qid)
    finally:
        pipe.close()
    qid = best[1] or sorted(qrels)[0]
    print(f"query {qid}: relevant document climbs {best[0]} ranks")
    return qid, queries[qid]


def main(home: Path, data: Path) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    config = load_config(None, [], home=str(home))
    qid, query = climbing_query(config, data)

    port = 8598
    proc = run_dashboard(replace(config, serve=replace(config.serve, dashboard_port=port)),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--window-size=1400,1700", f"--user-data-dir={home / '.chromium-profile'}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    wait = WebDriverWait(driver, 300)

    def text(t: str):
        return wait.until(ec.presence_of_element_located((By.XPATH, f"//*[contains(normalize-space(.), {t!r})]")))

    def click(xpath: str):
        el = wait.until(ec.element_to_be_clickable((By.XPATH, xpath)))
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", el)
        el.click()

    def page(name: str):
        click(f"//section[@data-testid='stSidebar']//label[normalize-space(.)={name!r}]")

    def shot(name: str, scroll_to: str | None = None):
        if scroll_to:
            el = driver.find_element(By.XPATH, f"//*[contains(normalize-space(.), {scroll_to!r})][not(*)]")
            driver.execute_script("arguments[0].scrollIntoView();", el)
        time.sleep(3.0)  # charts and tables finish drawing
        driver.save_screenshot(str(OUT / name))
        print("saved", OUT / name)

    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        driver.get(f"http://127.0.0.1:{port}")
        box = wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "input[aria-label='Query']")))
        box.send_keys(query, Keys.ENTER)
        text(f"Judged query {qid}")
        text("Each stage's ranking")
        shot("dashboard_scifact_stages.png", "Relevant judged documents through the stages")
        WebDriverWait(driver, 120).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "canvas, svg.marks")) >= 2)
        shot("dashboard_scifact_inspect.png", "LightGBM feature contributions")
        page("Queries")
        text("queries, worst first")
        shot("dashboard_scifact_queries.png")
        page("Compare")
        click("//label[normalize-space(.)='two configurations']")
        click("//button[normalize-space(.)='Run both configurations']")
        text("Both rankings of")
        shot("dashboard_scifact_compare.png", "Per query")
    finally:
        driver.quit()
        stop_process(proc)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))

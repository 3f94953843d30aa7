"""Screenshots of the dashboard's relevance pages on the Python-docs demo, taken in headless Chromium
after each page has rendered.

    .venv/bin/funnel --home /tmp/demo-shots demo --no-dense --no-spark --no-serve
    .venv/bin/python docs/screenshots/capture_relevance.py /tmp/demo-shots/demo

Steps: saves the hand ratings below into HOME/judgements (the dashboard's ratings file; the grades are
an engineer's reading of each page for the query, nothing more), writes two BM25 runs on them with
`funnel eval` (the default k1 0.9, b 0.4, and b 0.75), starts the dashboard on HOME, rates one more
result in the browser, and saves dashboard_demo_{judged,bm25,queries,compare}.png next to this script.
Needs Debian's chromium and chromium-driver.
"""
from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from dataclasses import replace
from pathlib import Path

from funnel.core.config import load_config
from funnel.core.procs import stop_process
from funnel.core.ratings import save_rating
from funnel.core.store import DocumentStore
from funnel.dashboard.launch import run_dashboard

OUT = Path(__file__).resolve().parent
# query -> {page path: grade 0-3}
RATINGS = {
    "list comprehension": {"tutorial/datastructures.html": 3, "reference/expressions.html": 2,
                           "howto/functional.html": 2, "whatsnew/2.0.html": 1, "library/ast.html": 0,
                           "tutorial/index.html": 0},
    "open a file and read lines": {"tutorial/inputoutput.html": 3, "library/functions.html": 2, "library/io.html": 2,
                                   "library/fileinput.html": 2, "library/csv.html": 0, "library/mailbox.html": 0,
                                   "library/gzip.html": 0},
    "asyncio event loop": {"library/asyncio-eventloop.html": 3, "library/asyncio-runner.html": 2,
                           "library/asyncio-llapi-index.html": 2, "library/asyncio-policy.html": 1,
                           "library/asyncio-task.html": 1, "library/asyncio-future.html": 0},
    "sort a dictionary by value": {"howto/sorting.html": 3, "library/functions.html": 2, "faq/programming.html": 2,
                                   "library/stdtypes.html": 1, "faq/design.html": 0, "library/json.html": 0},
    "regular expression groups": {"library/re.html": 3, "howto/regex.html": 3, "library/text.html": 1,
                                  "library/string.html": 0, "library/locale.html": 0},
}


def doc_ids_by_path(store) -> dict[str, str]:
    """Page path (after the demo site's host:port) -> doc id."""
    out = {}
    for doc in store.iter_docs():
        path = doc.doc_id.split("/", 3)[-1]
        out.setdefault(path, doc.doc_id)
    return out


def main(home: Path) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    config = load_config(None, [], home=str(home))
    with DocumentStore(config.paths.store, readonly=True) as store:
        ids = doc_ids_by_path(store)
    for i, (query, grades) in enumerate(RATINGS.items()):
        for path, grade in grades.items():
            if path in ids:
                save_rating(config.paths.judgements, f"py{i + 1}", query, ids[path], grade)
    funnel = [sys.executable, "-m", "funnel.cli.main", "-q", "--home", str(home)]
    ev = ["eval", "--data", str(config.paths.judgements), "--split", "ratings", "-k", "100"]
    subprocess.run(funnel + ev + ["--run-file", str(config.paths.runs / "bm25-k0.9-b0.4.trec")], check=True)
    subprocess.run(funnel + ["--set", "bm25.b=0.75"] + ev + ["--run-file", str(config.paths.runs / "bm25-k0.9-b0.75.trec")],
                   check=True)

    port = 8599
    proc = run_dashboard(replace(config, serve=replace(config.serve, dashboard_port=port)),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--window-size=1400,1500", f"--user-data-dir={home / '.chromium-profile'}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    wait = WebDriverWait(driver, 120)

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
        time.sleep(2.0)  # charts and tables finish drawing
        driver.save_screenshot(str(OUT / name))
        print("saved", OUT / name)

    try:
        deadline = time.monotonic() + 120
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
        box.send_keys("list comprehension", Keys.ENTER)
        text("Judged query py1")
        text("relevant (3)")
        WebDriverWait(driver, 60).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "canvas, svg.marks")) >= 2)
        shot("dashboard_demo_judged.png", "Each stage's ranking")
        # one more rating, given in the browser: the first result (6. Expressions) confirmed at 2
        click("//label[normalize-space(.)='2 relevant']")
        click("//button[normalize-space(.)='Save rating']")
        text("Saved: query py1")
        WebDriverWait(driver, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".funnel-doc mark"))
        shot("dashboard_demo_bm25.png", "per query term")
        page("Queries")
        text("queries, worst first")
        shot("dashboard_demo_queries.png")
        page("Compare")
        text("bm25-k0.9-b0.4.trec vs bm25-k0.9-b0.75.trec")
        text("Both rankings of")
        shot("dashboard_demo_compare.png", "Per query")
    finally:
        driver.quit()
        stop_process(proc)


if __name__ == "__main__":
    main(Path(sys.argv[1]))

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
from pathlib import Path

from dashboard_browser import DashboardBrowser
from funnel.core.config import load_config
from funnel.core.ratings import save_rating
from funnel.core.store import DocumentStore
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

    with DashboardBrowser(config, port=8599) as b:
        b.query("list comprehension")
        b.text("Judged query py1")
        b.text("relevant (3)")
        b.charts(2)
        b.shot("dashboard_demo_judged.png", "Each stage's ranking")
        # one more rating, given in the browser: the first result (6. Expressions) confirmed at 2
        b.click("//label[normalize-space(.)='2 relevant']")
        b.click("//button[normalize-space(.)='Save rating']")
        b.text("Saved: query py1")
        b.text("per query term")
        b.shot("dashboard_demo_bm25.png", "per query term")
        b.page("Queries")
        b.text("queries, worst first")
        b.shot("dashboard_demo_queries.png")
        b.page("Compare")
        b.text("bm25-k0.9-b0.4.trec vs bm25-k0.9-b0.75.trec")
        b.text("Both rankings of")
        b.shot("dashboard_demo_compare.png", "Per query")

if __name__ == "__main__":
    main(Path(sys.argv[1]))

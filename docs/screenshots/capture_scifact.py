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

import sys
from pathlib import Path

from dashboard_browser import DashboardBrowser
from funnel.core.config import load_config
from funnel.core.judgements import read_qrels, read_queries
from funnel.ranking.serving.pipeline import Pipeline


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
    config = load_config(None, [], home=str(home))
    qid, query = climbing_query(config, data)
    with DashboardBrowser(config, port=8598, height=1700) as b:
        b.query(query)
        b.text(f"Judged query {qid}")
        b.text("Each stage's ranking")
        b.shot("dashboard_scifact_stages.png", "Relevant judged documents through the stages")
        b.charts(2)
        b.shot("dashboard_scifact_inspect.png", "LightGBM feature contributions")
        b.page("Queries")
        b.text("queries, worst first")
        b.shot("dashboard_scifact_queries.png")
        b.page("Compare")
        b.click("//label[normalize-space(.)='two configurations']")
        b.click("//button[normalize-space(.)='Run both configurations']")
        b.text("Both rankings of")
        b.shot("dashboard_scifact_compare.png", "Per query")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))

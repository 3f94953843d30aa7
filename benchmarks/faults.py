"""Fault injection at scale: kill -9 during ingest, index and crawl, then the same command again
(a crawl resumes with no seeds or flags); what was lost or duplicated against an uninterrupted run.

    python benchmarks/faults.py [--kills 7] [--out benchmarks/results/faults.md]

Writes a Markdown table (fault | injected kills | lost | duplicated | recovery s) headed by the machine
and the command. The faults themselves live in `tests/faults/kills.py` (also run, a few kills each, by
`tests/faults/test_kill9.py`).
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.report import command, machine, publish  # noqa: E402
from tests.faults.kills import CrawlFault, IndexFault, IngestFault, serve_grid_site  # noqa: E402


def measure(fault, kills: int, rng: random.Random) -> dict:
    fault.reference()
    done, tries = [], 0
    while len(done) < kills and tries < 4 * kills:
        tries += 1
        inj = fault.inject(fault.reference_s * rng.uniform(0.1, 0.8), tries)
        if inj.killed:
            done.append(inj)
        print(f"  {fault.name}: kill at {inj.delay:.2f}s ({'injected' if inj.killed else 'ended first'}), "
              f"lost {inj.lost}, duplicated {inj.duplicated}, recovered in {inj.recovery_s:.2f}s", flush=True)
    rec = [i.recovery_s for i in done]
    return {"fault": fault.name, "kills": len(done), "lost": sum(i.lost for i in done),
            "dup": sum(i.duplicated for i in done), "rec_med": statistics.median(rec) if rec else 0.0,
            "rec_max": max(rec, default=0.0), "ref": fault.reference_s}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=7, help="injected kills per fault")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "faults.md"))
    args = ap.parse_args()
    rng = random.Random(20)
    rows = []
    with tempfile.TemporaryDirectory(prefix="funnel-faults-") as tmp:
        work = Path(tmp)
        ingest = IngestFault(work / "ingest", n_docs=40_000)
        rows.append(measure(ingest, args.kills, rng))
        rows.append(measure(IndexFault(work / "index", IngestFault(work / "ingest", n_docs=40_000)), args.kills, rng))
        with serve_grid_site() as base:
            rows.append(measure(CrawlFault(work / "crawl", base), args.kills, rng))
    lines = ["# Fault injection: kill -9, then the same command again", "",
             f"Machine: {machine()}", f"Command: `{command()}`", "",
             "Each kill lands at a random moment of the run (10-80% of an uninterrupted run's wall time, "
             "start-up included); lost/duplicated count rows (documents, links, queries, judgements; index "
             "documents) against an uninterrupted run; the index is also checked to score 5 queries "
             "identically. Recovery: wall time of the command run after the kill (start-up included). Python "
             "start-up is about half of each run on this machine, so some kills land before the first write.", "",
             "| fault | injected kills | lost | duplicated | recovery s (median / max) | uninterrupted run s |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['fault']} | {r['kills']} | {r['lost']} | {r['dup']} | "
                     f"{r['rec_med']:.2f} / {r['rec_max']:.2f} | {r['ref']:.2f} |")
    total = sum(r["kills"] for r in rows)
    lines += ["", f"{total} kills in all; {sum(r['lost'] for r in rows)} rows lost, "
                  f"{sum(r['dup'] for r in rows)} duplicated."]
    publish("\n".join(lines) + "\n", args.out)
    return 0 if all(r["lost"] == 0 and r["dup"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

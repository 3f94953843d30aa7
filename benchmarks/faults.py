"""Fault injection: kill -9 during ingest, index, crawl, embed and model publish, then the same command
again (a crawl resumes with no seeds or flags), compared with an uninterrupted run; hostile HTTP servers
against the crawler; a read-only home and a full disk under ingest, index, embed and training.

    python benchmarks/faults.py [--kills 7] [--model-kills 4] [--out benchmarks/results/faults.md]

Writes three Markdown tables headed by the machine and the command: kills (fault | injected kills | lost |
duplicated | recovery s), hostile servers and unwritable homes (fault | injected | lost | outcome). The
faults live in `tests/faults/kills.py` (kills), `tests/crawler/test_hostile_http.py` and
`tests/crawler/test_crawl.py` (servers, run here through pytest) and `tests/faults/test_storage.py`
(read-only home, disk full); `tests/faults/` runs a few of each.
"""
from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.report import command, machine, publish  # noqa: E402
from tests.faults.kills import (CrawlFault, EmbedFault, IndexFault, IngestFault, ModelFault,  # noqa: E402
                                serve_grid_site)

# Hostile servers: (test, fault, injected, what must happen). Each test asserts the good pages of its site
# were all stored, so a pass means 0 lost.
HOSTILE = [
    ("test_crawl.py::test_fetch_deadline_cuts_off_a_drip_server", "drip server", "3 pages, 1 byte per 0.2 s",
     "each cut at crawl.fetch_deadline (1 s), not retried, counted as timeouts; crawl done in < 6 s"),
    ("test_crawl.py::test_spider_trap_bounded_by_depth", "calendar trap (next month, forever)", "1 trap",
     "stopped at crawl.max_depth (months 0-3 fetched)"),
    ("test_hostile_http.py::test_wide_spider_trap_stops_at_the_page_cap", "wide trap (30 new links per page)",
     "1 trap", "stopped at crawl.max_pages (25 fetched, > 500 left queued)"),
    ("test_hostile_http.py::test_url_growing_trap_stops_at_max_url_length", "URL-growing trap (/a/a/a/...)",
     "1 trap", "stopped at crawl.max_url_length"),
    ("test_crawl.py::test_size_caps_and_gzip_bomb", "gzip bomb 100 MiB, oversized chunked body", "2 pages",
     "failed 'too large' at crawl.max_bytes"),
    ("test_hostile_http.py::test_streamed_gzip_bomb_of_gigabytes_is_cut_at_max_bytes",
     "gzip bomb 4 GiB, streamed", "1 page", "cut at crawl.max_bytes after decompression; RSS grew < 100 MiB"),
    ("test_crawl.py::test_content_types_and_charsets", "charset lies (cp1252 sent as utf-8; none; meta only)",
     "3 pages", "text decoded right"),
    ("test_hostile_http.py::test_charsets_that_contradict_the_bytes_or_each_other",
     "charset lies (latin-1 header on UTF-8; meta vs header both ways; unknown; invalid bytes)", "5 pages",
     "text decoded right, no crash"),
    ("test_crawl.py::test_redirects_loops_and_errors", "redirect loop a -> b -> a", "1 page",
     "failed 'redirect loop', recorded in the frontier"),
    ("test_hostile_http.py::test_redirect_chain_without_end_stops_after_max_redirects",
     "redirect chain without end", "1 page", "failed after crawl.max_redirects (5) hops, recorded"),
    ("test_hostile_http.py::test_robots_txt_503_disallows_the_host_and_backs_off", "robots.txt 503",
     "1 host", "host disallowed, robots.txt re-read after 0.2/0.4/0.8 s, URL kept queued (RFC 9309)"),
    ("test_hostile_http.py::test_robots_txt_that_never_answers_is_a_timeout_not_a_hang",
     "robots.txt never answers", "1 host", "read timeout, treated as unreachable, URL kept queued"),
    ("test_resume.py::test_robots_outage_during_a_run_is_retried_with_backoff", "site down at start, up 0.5 s later",
     "1 host", "robots.txt re-read with backoff, all 40 pages crawled"),
    ("test_resume.py::test_robots_outage_at_resume_keeps_urls_queued", "robots.txt unreachable at resume",
     "1 host", "URLs kept queued (never skipped), all fetched at the next resume"),
]


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


def hostile_rows() -> list[dict]:
    """Run the hostile-server tests through pytest; one row each, its outcome if it passed."""
    import pytest

    outcomes: dict[str, str] = {}

    class Collect:
        def pytest_runtest_logreport(self, report):
            if report.when == "call" or report.outcome != "passed":
                outcomes[report.nodeid.split("crawler/")[-1]] = report.outcome

    ids = [str(ROOT / "tests" / "crawler" / t) for t, *_ in HOSTILE]
    pytest.main(["-q", "-p", "no:cacheprovider", *ids], plugins=[Collect()])
    rows = []
    for test, fault, injected, outcome in HOSTILE:
        ok = outcomes.get(test) == "passed"
        rows.append({"fault": fault, "injected": injected, "lost": "0" if ok else "?",
                     "outcome": outcome if ok else f"FAILED ({test})", "ok": ok})
    return rows


def storage_rows(work: Path) -> list[dict]:
    """Each command once on a read-only home and once with a full disk (RLIMIT_FSIZE), one home for all:
    one error line, the home unchanged, then `funnel search` answers as before."""
    import time

    from tests.faults.test_storage import (COMMANDS, build_home, home_state, run_disk_full, run_read_only,
                                           search_home, unchanged)

    home = build_home(work)
    answers = search_home(home)
    rows = []
    for fault, runner in (("read-only home", run_read_only), ("disk full (RLIMIT_FSIZE 2 KiB)", run_disk_full)):
        h = work / fault.split()[0]
        shutil.copytree(home, h)  # `ingest` reads h.parent / "more", made by build_home
        for name, args in COMMANDS.items():
            before = home_state(h)
            t0 = time.monotonic()
            try:
                done = runner(h, args(h), work)
            except BaseException as exc:  # pytest.skip: no way to make the home read-only here
                rows.append({"fault": f"{fault}: funnel {name}", "injected": "0", "lost": "-",
                             "outcome": f"not run: {exc}", "ok": True})
                continue
            err = [line.replace(str(h), "HOME") for line in done.stderr.strip().splitlines()]
            clean = done.returncode == 2 and len(err) == 1 and err[0].startswith("error: cannot write")
            same = unchanged(before, home_state(h))
            served = search_home(h) == answers
            ok = clean and same and served
            outcome = (f"exit 2 in {time.monotonic() - t0:.1f} s, `{err[0][:110]}...`; home unchanged, search "
                       f"answers as before" if ok else
                       f"FAILED: exit {done.returncode}, one line {clean}, unchanged {same}, served {served}")
            rows.append({"fault": f"{fault}: funnel {name}", "injected": "1", "lost": "0" if same else "?",
                         "outcome": outcome, "ok": ok})
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=7, help="injected kills per fault (ingest, index, crawl)")
    ap.add_argument("--model-kills", type=int, default=4, help="injected kills for embed and model publish "
                                                                 "(each run loads torch: slower)")
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
        rows.append(measure(EmbedFault(work / "embed", n_docs=1500), args.model_kills, rng))
        rows.append(measure(ModelFault(work / "model"), args.model_kills, rng))
        storage = storage_rows(work / "storage")
    hostile = hostile_rows()
    lines = ["# Fault injection: kill -9, hostile servers, an unwritable home", "",
             f"Machine: {machine()}", f"Command: `{command()}`", "",
             "Each kill lands at a random moment of the run (10-80% of an uninterrupted run's wall time, "
             "start-up included); lost/duplicated count rows (documents, links, queries, judgements; index "
             "documents) against an uninterrupted run; the index is also checked to score 5 queries "
             "identically. Recovery: wall time of the command run after the kill (start-up included). Python "
             "start-up is about half of each run on this machine, so some kills land before the first write. "
             "Embed: an incremental `funnel embed` (tiny encoder, 1,200 new documents); lost = documents missing or "
             "with a vector off by more than 1e-6, and 5 probe searches must return the same documents. Model "
             "publish: `funnel train coarse` over an older model; right after each kill HOME/models/coarse must "
             "hold the old model or the new one whole (a half one counts as lost), and after the rerun the "
             "model must score 200 rows exactly as an uninterrupted run's. The kill at every rename of a publish "
             "is in `tests/faults/test_kill9.py::test_model_folder_is_old_or_new_at_every_rename`.", "",
             "| fault | injected kills | lost | duplicated | recovery s (median / max) | uninterrupted run s |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['fault']} | {r['kills']} | {r['lost']} | {r['dup']} | "
                     f"{r['rec_med']:.2f} / {r['rec_max']:.2f} | {r['ref']:.2f} |")
    total = sum(r["kills"] for r in rows)
    lines += ["", f"{total} kills in all; {sum(r['lost'] for r in rows)} rows lost, "
                  f"{sum(r['dup'] for r in rows)} duplicated."]
    for title, intro, table in (
            ("Hostile HTTP servers (crawler)", "Each a real aiohttp server on 127.0.0.1; lost: good pages of the "
             "same site not stored (each test asserts the full set).", hostile),
            ("An unwritable home", "The home of a finished build (store, index, vector index, coarse model) plus "
             "documents waiting to be indexed and embedded; read-only by chmod 0555, or as root by a read-only bind "
             "mount in a private mount namespace; disk full by RLIMIT_FSIZE (writes past 2 KiB fail with EFBIG). "
             "lost: rows or published files changed.", storage)):
        lines += ["", f"## {title}", "", intro, "", "| fault | injected | lost | outcome |", "|---|---|---|---|"]
        lines += [f"| {r['fault']} | {r['injected']} | {r['lost']} | {r['outcome']} |" for r in table]
    publish("\n".join(lines) + "\n", args.out)
    kills_ok = all(r["lost"] == 0 and r["dup"] == 0 for r in rows)
    return 0 if kills_ok and all(r["ok"] for r in hostile + storage) else 1


if __name__ == "__main__":
    sys.exit(main())

"""kill -9 during crawl, ingest and index, then the same command again: nothing lost, nothing duplicated,
identical scores (a few injections each; `benchmarks/faults.py` runs many more and writes faults.md)."""
from __future__ import annotations

import random

import pytest

from tests.faults.kills import CrawlFault, IndexFault, IngestFault, delays, serve_grid_site

pytestmark = pytest.mark.slow
KILLS = 2


def _check(fault, rng):
    fault.reference()
    injected = 0
    for i, delay in enumerate(delays(fault, KILLS, rng)):
        inj = fault.inject(delay, i)
        assert (inj.lost, inj.duplicated) == (0, 0), inj
        injected += inj.killed
    assert injected >= 1, "every kill came after the command had ended: nothing was tested"


def test_kill_9_during_ingest(tmp_path):
    _check(IngestFault(tmp_path, n_docs=20_000), random.Random(1))


def test_kill_9_during_index(tmp_path):
    _check(IndexFault(tmp_path, IngestFault(tmp_path / "in", n_docs=20_000)), random.Random(2))


def test_kill_9_during_crawl(tmp_path):
    with serve_grid_site() as base:
        _check(CrawlFault(tmp_path, base), random.Random(3))

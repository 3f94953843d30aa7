"""kill -9 during crawl, ingest, index, embed and model publish, then the same command again: nothing lost, nothing duplicated,
identical scores (a few injections each; `benchmarks/faults.py` runs many more and writes faults.md)."""
from __future__ import annotations

import random
import shutil

import pytest

from tests.faults.kills import (CrawlFault, EmbedFault, IndexFault, IngestFault, ModelFault, delays, kill_at_rename,
                               run, serve_grid_site)

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


def test_kill_9_during_embed(tmp_path):
    _check(EmbedFault(tmp_path, n_docs=800), random.Random(4))


def test_kill_9_during_model_publish(tmp_path):
    _check(ModelFault(tmp_path), random.Random(5))


def test_model_folder_is_old_or_new_at_every_rename(tmp_path):
    """`funnel train coarse` killed right after each of its renames into HOME/models (a random kill almost
    never lands there): the folder holds the old model or the new one, whole. Before the fix the trainer
    saved into the served folder, meta.json then model.txt: a kill between them paired new meta with old
    trees (and `funnel build`'s publish left no folder at all between its two renames)."""
    fault = ModelFault(tmp_path)
    fault.reference()
    home = tmp_path / "count"
    fault.setup_home(home)
    _, total = kill_at_rename(fault.start(home)[3:], 0, home / "models")  # n = 0: count them
    shutil.rmtree(home)
    assert total >= 1
    for n in range(1, total + 1):
        home = tmp_path / f"at-{n}"
        fault.setup_home(home)
        killed, _ = kill_at_rename(fault.start(home)[3:], n, home / "models")
        assert killed
        assert fault.model_files(home) in (fault.old_files, fault.new_files), f"half a model after rename {n}"
        run(fault.resume(home))
        assert fault.compare(fault.reference(), fault.result(home)) == (0, 0)
        shutil.rmtree(home)

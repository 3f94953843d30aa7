"""For tests that serve recommendation (the API, the dashboard): a Funnel home holding the synthetic
interaction log (`tests.ranking.rec.conftest.make_log`) in its store and a tiny funnel fitted on it in
``models/rec``, with no search index. Fitting takes some seconds: build it once per module or session."""
from __future__ import annotations

import json
from pathlib import Path

from funnel.core.config import load_config
from funnel.core.store import DocumentStore


def build_rec_home(home: Path, log=None) -> Path:
    """Write the synthetic log (or `log`: the tables of `make_log`) into ``home``'s store, fit `tests.ranking.rec.test_service.RECIPE` on it
    (one torch thread) and publish it at ``paths.rec_funnel`` with its ``log.json``; -> home."""
    import torch

    from funnel.ranking.rec.build import fit_funnel
    from funnel.ranking.rec.service import LOG_FILE, log_fingerprint
    from funnel.ranking.rec.store_log import load_dataset
    from tests.ranking.rec.conftest import make_log
    from tests.ranking.rec.test_service import RECIPE, write_log

    config = load_config(home=home)
    with DocumentStore(config.paths.store) as store:
        write_log(store, make_log() if log is None else log)
        ds = load_dataset(store)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fitted = fit_funnel(ds, RECIPE)
    finally:
        torch.set_num_threads(before)
    fitted.save(config.paths.rec_funnel)
    (config.paths.rec_funnel / LOG_FILE).write_text(json.dumps(log_fingerprint(ds, "movielens")))
    return home

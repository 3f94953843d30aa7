"""Pruned vs unpruned cross-encoder, side by side in one process: heads kept, parameters, nDCG@10 and
re-ranking latency on SciFact dev (re-ranking BM25's top `--depth` of each query).

Models compared:
- the teacher (``--teacher``, the trained cross-encoder as served);
- every ``--pruned`` folder (made by ``funnel prune``: iterative pruning + distillation recovery);
- a one-shot curve: the teacher with the ``--curve`` fractions of its least important heads sliced out
  (importance from `funnel.ranking.training.prune.unit_importance` on ``--importance-queries`` dev queries), no recovery.

Latency: for each query, every model scores the same pre-tokenised batch of the query's candidates
(model forward only: tokenisation is the same for all models), the models taking turns query by
query so that machine load hits them alike. p50/p99 are over queries; speed-up = the teacher's total
time / the model's total time. With a CUDA GPU present, the same is measured on it (fp16) too.

    python benchmarks/pruning.py --home HOME --data ../shared/data/scifact --teacher HOME/models/cross-encoder \
        --pruned HOME/models/cross-encoder-pruned [--curve 0.25,0.5,0.75] [--queries 60]

Writes ``benchmarks/results/pruning.md`` (table, machine, command) and ``pruning_curve.png``.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.report import command as command_line, machine  # noqa: E402
from funnel.core.judgements import read_qrels  # noqa: E402
from funnel.core.config import load_config  # noqa: E402
from funnel.ranking.models import heads as H  # noqa: E402
from funnel.ranking.training import prune as P  # noqa: E402
from funnel.ranking.models.cross_encoder import load_cross_encoder  # noqa: E402
from funnel.ranking.evaluate import evaluate, format_table  # noqa: E402
from funnel.ranking.models.quantize import quantize_int8  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def run_models(models: dict, batches: list[dict], device, dtype, int8: frozenset = frozenset()) -> dict:
    """Scores and per-query forward seconds of every model, models taking turns query by query.

    Models named in `int8` run dynamically quantised (`funnel.ranking.models.quantize`), on the CPU only.
    """
    if device.type != "cpu":
        models = {n: m for n, m in models.items() if n not in int8}
    scores = {n: [] for n in models}
    secs = {n: [] for n in models}
    placed = {n: copy.deepcopy(m).to(device=device, dtype=dtype).eval() for n, m in models.items()}
    placed = {n: quantize_int8(m) if n in int8 else m for n, m in placed.items()}
    names = list(placed)
    with torch.inference_mode():
        for m in placed.values():  # warm-up
            m(**{k: v.to(device) for k, v in batches[0].items()})
        for qi, enc in enumerate(batches):
            enc = {k: v.to(device) for k, v in enc.items()}
            for n in names[qi % len(names):] + names[:qi % len(names)]:  # rotate who goes first
                if device.type == "cuda":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                logits = placed[n](**enc).logits[:, 0]
                if device.type == "cuda":
                    torch.cuda.synchronize()
                secs[n].append(time.perf_counter() - t0)
                scores[n].append(logits.float().cpu().numpy())
    return {"scores": scores, "secs": secs}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--home", required=True, help="Funnel home holding the SciFact store and index")
    ap.add_argument("--data", required=True, help="BEIR SciFact folder")
    ap.add_argument("--teacher", required=True, help="the unpruned cross-encoder folder")
    ap.add_argument("--pruned", nargs="*", default=[], help="pruned folders from `funnel prune`")
    ap.add_argument("--curve", default="0.25,0.5,0.75", help="one-shot head fractions to remove ('' for none)")
    ap.add_argument("--split", default="dev")
    ap.add_argument("--queries", type=int, default=60, help="seeded sample of judged queries (0: all)")
    ap.add_argument("--importance-queries", type=int, default=20)
    ap.add_argument("--depth", type=int, default=20)
    ap.add_argument("--max-length", type=int, default=0, help="0: the teacher's")
    ap.add_argument("--cpu-threads", type=int, default=0, help="torch CPU threads for the CPU timing (0: torch's default)")
    ap.add_argument("--cpu-queries", type=int, default=0,
                    help="time the CPU on the first N queries only (0: all); nDCG@10 always uses every query")
    ap.add_argument("--int8", action="store_true",
                    help="add CPU int8 rows (dynamic quantisation) of the teacher and every --pruned model")
    ap.add_argument("--out", default=str(RESULTS / "pruning.md"))
    args = ap.parse_args()

    config = load_config(None, [f'paths.home="{args.home}"'])
    ce = load_cross_encoder(args.teacher, device="cpu")
    tok, max_length = ce.tokenizer, args.max_length or ce.max_length
    sets = P.load_rerank_sets(config, args.data, args.split, args.depth, args.queries, seed=0)
    qrels = read_qrels(Path(args.data), args.split)
    models = {"teacher (unpruned)": ce.model}
    notes = {"teacher (unpruned)": ""}
    fractions = [float(x) for x in args.curve.split(",") if x.strip()]
    if fractions:
        imp_sets = P.load_rerank_sets(config, args.data, args.split, args.depth, args.importance_queries, seed=1)
        t0 = time.perf_counter()
        imp, _ = P.unit_importance(ce.model, tok, imp_sets, max_length, ffn=False)
        print(f"importance on {len(imp_sets)} {args.split} queries: {time.perf_counter() - t0:.0f}s", flush=True)
        n_heads = sum(H.heads_per_layer(ce.model))
        for f in fractions:
            m = copy.deepcopy(ce.model)
            H.prune_heads(m, P.choose_heads(imp, round(f * n_heads)))
            models[f"one-shot -{f:.0%} heads"] = m
            notes[f"one-shot -{f:.0%} heads"] = "no recovery"
    for path in args.pruned:
        m = load_cross_encoder(path, device="cpu").model
        name = Path(path).name
        models[name] = m
        s = json.loads((Path(path) / "funnel_meta.json").read_text()).get("pruning", {})
        pc = s.get("prune_config", {})
        notes[name] = (f"funnel prune: target {pc.get('target')}, FFN {pc.get('ffn_target')}, "
                       f"recovery {s.get('recovery', {}).get('steps')} steps at lr {pc.get('recover_lr')} "
                       f"({pc.get('recover_schedule', 'end')}"
                       + (f", hidden-state MSE x{pc['distill_hidden']}" if pc.get("distill_hidden") else "") + ")")

    int8 = set()
    if args.int8:
        for name in [n for n in models if not n.startswith("one-shot")]:
            models[f"{name} int8"] = models[name]
            notes[f"{name} int8"] = "CPU int8 dynamic quantisation of the row above"
            int8.add(f"{name} int8")
    int8 = frozenset(int8)
    # One pre-tokenised batch per query: every model sees exactly the same input.
    batches = [tok([s.query] * len(s.texts), s.texts, truncation="only_second", max_length=max_length,
                   padding=True, return_tensors="pt") for s in sets]
    if args.cpu_threads:
        torch.set_num_threads(args.cpu_threads)
    cpu_batches = batches[: args.cpu_queries] if args.cpu_queries else batches
    runs = [("cpu", torch.device("cpu"), torch.float32, cpu_batches)]
    if torch.cuda.is_available():
        runs.append(("cuda", torch.device("cuda"), torch.float16, batches))
    timings = {}
    for key, dev, dt, bs in runs:
        t0 = time.perf_counter()
        timings[key] = run_models(models, bs, dev, dt, int8)
        print(f"{key}: {len(models)} models x {len(bs)} queries in {time.perf_counter() - t0:.0f}s", flush=True)
    if len(cpu_batches) < len(batches):  # quality from an untimed fp32 pass over every query
        where = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        quality = run_models(models, batches, where, torch.float32)["scores"]
        if int8:
            quality.update(run_models({n: models[n] for n in int8}, batches, torch.device("cpu"), torch.float32,
                                      int8)["scores"])
    else:
        quality = timings["cpu"]["scores"]

    rows, curve = [], []
    base = {d: float(np.sum(timings[d]["secs"]["teacher (unpruned)"])) for d in timings}
    base_ndcg = None
    for name, m in models.items():
        cpu = timings["cpu"]
        run = {s.qid: {d: float(x) for d, x in zip(s.doc_ids, sc)} for s, sc in zip(sets, quality[name])}
        ndcg = evaluate(run, {q: qrels[q] for q in run})["nDCG@10"]
        base_ndcg = ndcg if base_ndcg is None else base_ndcg
        ms = np.array(cpu["secs"][name]) * 1000
        row = {"model": name, "heads": sum(H.heads_per_layer(m)), "FFN width": "/".join(map(str, H.ffn_sizes(m))),
               "params (M)": f"{H.count_parameters(m) / 1e6:.2f}", "nDCG@10": round(ndcg, 4),
               "ΔnDCG@10": round(ndcg - base_ndcg, 4), "CPU p50 ms": f"{np.percentile(ms, 50):.0f}",
               "CPU p99 ms": f"{np.percentile(ms, 99):.0f}",
               "CPU speed-up": f"{base['cpu'] / ms.sum() * 1000:.2f}x"}
        if "cuda" in timings and name in timings["cuda"]["secs"]:
            gms = np.array(timings["cuda"]["secs"][name]) * 1000
            row["GPU p50 ms"] = f"{np.percentile(gms, 50):.2f}"
            row["GPU speed-up"] = f"{base['cuda'] / gms.sum() * 1000:.2f}x"
        else:
            if "cuda" in timings:
                row["GPU p50 ms"] = ""
            row["GPU speed-up"] = "n/a (CPU only)" if name in int8 else "n/a (no GPU)"
        row["notes"] = notes[name]
        rows.append(row)
        curve.append((row["heads"], ndcg, float(np.percentile(ms, 50)), name))

    bm25_run = {s.qid: {d: float(len(s.doc_ids) - i) for i, d in enumerate(s.doc_ids)} for s in sets}
    bm25_ndcg = evaluate(bm25_run, {q: qrels[q] for q in bm25_run})["nDCG@10"]
    rows.append({**{c: "" for c in rows[0]}, "model": "BM25 order (no re-ranking)", "nDCG@10": round(bm25_ndcg, 4),
                 "ΔnDCG@10": round(bm25_ndcg - base_ndcg, 4), "notes": "context"})
    cols = list(rows[0])
    command = command_line()
    text = "\n".join([
        "# Attention-head pruning of the cross-encoder",
        "",
        f"Machine: {machine()}.",
        f"Command: `{command}`",
        "",
        f"SciFact `{args.split}`: {len(sets)} judged queries ({'all' if not args.queries else 'seeded sample'}), "
        f"each re-ranking BM25's top {args.depth} at max_length {max_length}; nDCG@10 of that re-ranking "
        f"(fp32; int8 rows: their own CPU int8 scores). "
        f"Latency: model forward on one query's {args.depth} pre-tokenised pairs (one batch), models taking turns "
        f"query by query; CPU fp32 with {torch.get_num_threads()} threads over {len(cpu_batches)} queries"
        f"{', GPU fp16 over all' if 'cuda' in timings else ''}; speed-up = teacher total time / model total time. "
        f"One-shot rows: least important heads sliced out of the "
        f"teacher, no recovery (importance on a seeded sample of {args.importance_queries} {args.split} queries).",
        "",
        format_table(rows, cols),
        "",
    ])
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    plot(curve, out.with_name(f"{out.stem}_curve.png"), sum(H.heads_per_layer(ce.model)))
    print(f"written {out} and {out.with_name(out.stem + '_curve.png')}")
    return 0


def plot(curve, path: Path, n_heads: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    for heads, ndcg, ms, name in curve:
        marker = "s" if name.startswith("one-shot") else ("*" if "teacher" in name else "o")
        a.scatter(heads, ndcg, marker=marker, s=60, label=name)
        b.scatter(heads, ms, marker=marker, s=60, label=name)
    a.set_xlabel(f"attention heads kept (of {n_heads})")
    a.set_ylabel("nDCG@10 (SciFact dev, re-rank BM25 top-k)")
    b.set_xlabel(f"attention heads kept (of {n_heads})")
    b.set_ylabel("CPU ms per query (p50)")
    a.grid(alpha=0.3)
    b.grid(alpha=0.3)
    b.legend(fontsize=7, loc="best")
    fig.suptitle("Cross-encoder head pruning: quality and CPU latency")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())

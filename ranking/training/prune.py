"""Pruning of the cross-encoder: remove the attention heads (and FFN neurons) that matter least, then
recover with a short distillation fine-tune. Feeds the fine-ranking stage a smaller, faster model.

1. Importance (Michel et al., 2019, "Are Sixteen Heads Really Better than One?"): attach a mask of
   ones to every head (`funnel.ranking.models.heads.UnitMask`), backpropagate the ranking loss on judged queries,
   and average ``|dL/dmask|`` over the queries: the expected sensitivity of the loss to removing the
   head. Scores are normalised per layer (L2), as in the paper, so layers compare on one scale.
   The loss is the listwise softmax cross-entropy of a query's BM25 candidates against its judgements.
2. Iterative pruning: in ``steps`` rounds, recompute importance on the current model and physically
   slice out the least important heads (`funnel.ranking.models.heads.prune_heads`) until ``target`` of the
   original heads are gone; with a ``latency_budget``, keep going (up to ``max_target``) until the
   measured CPU latency is within that fraction of the original. Each layer keeps at least one head.
   FFN neurons (``ffn_target``, a fraction per layer) are scored and cut the same way in the same rounds.
3. Recovery: fine-tune the pruned student on the training judgements with the unpruned model as
   teacher: ``alpha * listwise CE(labels) + (1 - alpha) * T^2 * KL(teacher_T || student_T)`` over
   groups of (positive, BM25 negatives), where ``_T`` is a softmax at temperature T; with
   ``prune.recover_pseudo_queries`` > 0, that many document titles join the training queries as
   unjudged queries (their own document as the group's positive): more in-domain data to match the
   teacher on. With ``prune.distill_hidden`` > 0, plus that weight x the layer-by-layer
   hidden-state MSE. Schedule
   ``prune.recover_schedule``: "end" runs all ``recover_steps`` after the last cut; "rounds" runs
   ``recover_steps / steps`` after every cut, so each round's importance is measured on a model
   that has recovered from the previous cut (gradual pruning).

Files written into the output folder (a cross-encoder folder, see `funnel.ranking.models.cross_encoder`)
------------------------------------------------------------------------------------------
- ``config.json`` + ``model.safetensors`` + tokenizer files: the pruned model; the config records
  the heads kept per layer (``funnel_heads_kept``) and FFN widths (``funnel_intermediate_sizes``);
- ``funnel_meta.json``: the teacher's meta plus ``pruning``: the prune config, per-round log
  (importance per layer, heads removed, latency), parameter counts, nDCG@10 before/after recovery.
"""
from __future__ import annotations

import copy
import json
import logging
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from funnel.core.config import Config, PruneConfig
from funnel.core.device import resolve_device
from funnel.core.errors import InputError
from funnel.core.judgements import read_qrels, read_queries
from funnel.core.store import DocumentStore
from funnel.index.searcher import Bm25Retriever
from funnel.ranking.models import heads as H
from funnel.ranking.models.backbone import load_tokenizer
from funnel.ranking.models.cross_encoder import load_model, pair_text, read_meta, save_cross_encoder
from funnel.ranking.training.optim import adamw_linear, update
from funnel.ranking.training.rerank_sets import evaluate_rerank, load_rerank_sets, RerankSet, score_pairs
from funnel.ranking.training.train_cross import listwise_loss, make_groups, mine_negatives


log = logging.getLogger(__name__)


def label_loss(logits, labels):
    """Listwise softmax cross-entropy against the judgements normalised to a distribution.

    logits, labels: (n,) -> scalar. Queries without a relevant candidate give no signal: skip them.
    """
    import torch

    target = labels / labels.sum()
    return -(target * torch.log_softmax(logits, dim=0)).sum()


def unit_importance(model, tokenizer, sets: list[RerankSet], max_length: int, *, ffn: bool = True,
                    normalise: bool = True, progress: bool = False):
    """Expected |dL/dmask| of every head (and FFN neuron), normalised per layer unless ``normalise`` is False.

    Returns (heads, ffn_scores): lists per layer of float64 arrays (n_heads_l,) / (intermediate_l,);
    ffn_scores is None when ``ffn`` is False.
    """
    import torch
    from tqdm.auto import tqdm

    dtype, dev = next(model.parameters()).dtype, next(model.parameters()).device
    head_masks = [torch.ones(n, dtype=dtype, device=dev, requires_grad=True) for n in H.heads_per_layer(model)]
    ffn_masks = ([torch.ones(n, dtype=dtype, device=dev, requires_grad=True) for n in H.ffn_sizes(model)]
                 if ffn else None)
    head_acc = [np.zeros(n) for n in H.heads_per_layer(model)]
    ffn_acc = [np.zeros(n) for n in H.ffn_sizes(model)] if ffn else None
    used = [s for s in sets if s.labels.sum() > 0]
    if not used:
        raise InputError("importance: no query has a judged relevant document among its candidates")
    model.eval()  # no dropout: the gradient is that of the model as served
    params = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)  # only the masks need gradients: cheaper backward
    try:
        with H.UnitMask(model, head_masks, ffn_masks):
            for s in tqdm(used, desc="importance", unit="query", disable=not progress):
                logits = score_pairs(model, tokenizer, s.query, s.texts, max_length)
                loss = label_loss(logits, torch.from_numpy(s.labels).to(logits.dtype))
                grads = torch.autograd.grad(loss, head_masks + (ffn_masks or []))
                for i in range(len(head_masks)):
                    head_acc[i] += grads[i].abs().double().cpu().numpy()
                    if ffn:
                        ffn_acc[i] += grads[len(head_masks) + i].abs().double().cpu().numpy()
    finally:
        for p, flag in zip(model.parameters(), params):
            p.requires_grad_(flag)

    def finish(acc):  # the mean; then per layer L2 (Michel et al.): every layer's scores on one scale
        mean = [a / len(used) for a in acc]
        return [m / (np.linalg.norm(m) + 1e-20) for m in mean] if normalise else mean

    return finish(head_acc), (finish(ffn_acc) if ffn else None)


def choose_heads(importance: list[np.ndarray], n_remove: int) -> dict[int, list[int]]:
    """The `n_remove` least important heads over all layers, never the last head of a layer.

    Ties break by (layer, head) so the choice is deterministic.
    """
    order = sorted((float(s), li, h) for li, layer in enumerate(importance) for h, s in enumerate(layer))
    left = [len(layer) for layer in importance]
    remove: dict[int, list[int]] = {}
    for _, li, h in order:
        if n_remove <= 0:
            break
        if left[li] <= 1:
            continue
        remove.setdefault(li, []).append(h)
        left[li] -= 1
        n_remove -= 1
    return remove


def choose_ffn(importance: list[np.ndarray], keep_sizes: list[int]) -> dict[int, list[int]]:
    """Per layer, the neurons to cut so that `keep_sizes[l]` of the most important remain."""
    return {li: np.argsort(scores, kind="stable")[: max(len(scores) - keep, 0)].tolist()
            for li, (scores, keep) in enumerate(zip(importance, keep_sizes))}


def measure_latency(model, tokenizer, query: str, texts: list[str], max_length: int, reps: int = 3) -> float:
    """Best-of-`reps` seconds to score one query's candidates (one batch), under inference mode."""
    import torch

    dev = next(model.parameters()).device
    enc = tokenizer([query] * len(texts), texts, truncation="only_second", max_length=max_length,
                    padding=True, return_tensors="pt")
    enc = {k: v.to(dev) for k, v in enc.items()}
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    best = float("inf")
    with torch.inference_mode():
        model(**enc)
        for _ in range(reps):
            sync()
            t0 = time.perf_counter()
            model(**enc)
            sync()
            best = min(best, time.perf_counter() - t0)
    return best


def prune_iteratively(model, tokenizer, sets: list[RerankSet], pc: PruneConfig, max_length: int, *,
                      after_round=None, progress: bool = False) -> list[dict]:
    """Prune `model` in place per `pc` (see the module docstring); returns the per-round log.

    `after_round(model, round)`, when given, runs after each round's cut (e.g. a recovery fine-tune)
    and its return value is logged with the round.
    """
    from tqdm.auto import tqdm

    n_heads0 = sum(H.heads_per_layer(model))
    ffn0 = H.ffn_sizes(model)
    probe = max(sets, key=lambda s: len(s.texts))
    lat0 = measure_latency(model, tokenizer, probe.query, probe.texts, max_length)
    rounds, steps = [], max(1, pc.steps)
    bar = tqdm(total=steps, desc="prune", unit="round", disable=not progress)
    step = 0
    while True:
        step += 1
        if step <= steps:
            head_goal = round(n_heads0 * pc.target * step / steps)
        else:  # latency budget not met yet: one more round of 1/steps of the target each
            head_goal = round(n_heads0 * min(pc.max_target, pc.target * step / steps))
        ffn_goal = [int(round(n * (1 - pc.ffn_target * min(step, steps) / steps))) for n in ffn0]
        n_remove = head_goal - (n_heads0 - sum(H.heads_per_layer(model)))
        need_ffn = any(k < n for k, n in zip(ffn_goal, H.ffn_sizes(model)))
        if n_remove <= 0 and not need_ffn:
            break
        head_imp, ffn_imp = unit_importance(model, tokenizer, sets, max_length, ffn=need_ffn, progress=False)
        remove = choose_heads(head_imp, max(n_remove, 0))
        H.prune_heads(model, remove)
        if need_ffn:
            H.prune_ffn(model, choose_ffn(ffn_imp, ffn_goal))
        lat = measure_latency(model, tokenizer, probe.query, probe.texts, max_length)
        recovery = after_round(model, step) if after_round else None
        rounds.append({"round": step, "removed": {str(k): v for k, v in remove.items()},
                       "importance": [np.round(x, 4).tolist() for x in head_imp],
                       "heads_left": sum(H.heads_per_layer(model)), "ffn_sizes": H.ffn_sizes(model),
                       "latency_ratio": round(lat / lat0, 3), **({"recovery": recovery} if recovery else {})})
        log.info("prune round %d: %d/%d heads left, FFN %s, latency x%.2f of the original", step,
                 rounds[-1]["heads_left"], n_heads0, H.ffn_sizes(model), lat / lat0)
        bar.update(1)
        if step >= steps and (not pc.latency_budget or lat / lat0 <= pc.latency_budget
                              or head_goal >= round(n_heads0 * pc.max_target)):
            break
    bar.close()
    return rounds


@dataclass
class RecoveryData:
    """What recovery trains on: (query id, [positive, BM25 negatives...]) groups, and the query and
    document texts they name. Groups come from the judged queries of ``prune.recover_split`` and,
    with ``prune.recover_pseudo_queries``, from document titles used as queries (`pseudo_queries`)."""
    groups: list
    queries: dict
    texts: dict
    pseudo_groups: int = 0


PSEUDO_PREFIX = "title:"


def pseudo_queries(store, n: int, rng: random.Random, min_words: int = 4) -> tuple[dict, dict]:
    """A seeded sample of `n` documents' titles as queries, each judging its own document relevant.

    Distillation needs no labels, so these unjudged queries add in-domain training data for free; the
    own document only anchors the group as its "positive". Titles shorter than `min_words` are skipped.
    Returns (queries, qrels) keyed ``title:DOC_ID``.
    """
    titled = sorted((d.doc_id, d.title.strip()) for d in store.iter_docs() if len(d.title.split()) >= min_words)
    chosen = rng.sample(titled, min(n, len(titled)))
    return ({PSEUDO_PREFIX + d: t for d, t in chosen}, {PSEUDO_PREFIX + d: {d: 1} for d, _ in chosen})


def recovery_data(config: Config, data_dir: str | Path) -> RecoveryData:
    """Groups of ``prune.recover_group_size`` (one positive, BM25 hard negatives) on ``prune.recover_split``,
    plus ``prune.recover_pseudo_queries`` title-query groups, shuffled together."""

    pc = config.prune
    rng = random.Random(pc.seed)
    qrels = read_qrels(Path(data_dir), pc.recover_split)
    queries = read_queries(Path(data_dir))
    qrels = {q: d for q, d in qrels.items() if q in queries and any(g > 0 for g in d.values())}
    retriever = Bm25Retriever.open(config.paths.index, config.bm25)
    negatives = mine_negatives(retriever, queries, qrels, config.fine.negatives_depth)
    groups = make_groups(qrels, negatives, pc.recover_group_size, rng)
    with DocumentStore(config.paths.store, readonly=True) as store:
        pseudo = []
        if pc.recover_pseudo_queries > 0:
            pq, pqrels = pseudo_queries(store, pc.recover_pseudo_queries, rng)
            queries = {**queries, **pq}
            pseudo = make_groups(pqrels, mine_negatives(retriever, pq, pqrels, config.fine.negatives_depth),
                                 pc.recover_group_size, rng)
            groups = groups + pseudo
            rng.shuffle(groups)
        docs = store.get_many({d for _, ds in groups for d in ds})
    groups = [(q, ds) for q, ds in groups if all(d in docs for d in ds)]
    if not groups:
        raise InputError(f"{data_dir}/qrels/{pc.recover_split}.tsv: no recovery group could be built")
    return RecoveryData(groups, queries, {d: pair_text(doc.title, doc.text) for d, doc in docs.items()},
                        sum(q.startswith(PSEUDO_PREFIX) for q, _ in groups))


def hidden_loss(student_states, teacher_states, attention_mask):
    """Mean over layers of the MSE between student and teacher hidden states, padding excluded.

    Pruning heads and FFN neurons keeps the hidden size and the number of layers, so layer l of the
    student matches layer l of the teacher (TinyBERT-style intermediate distillation; the embedding
    output, index 0, is not pruned and is skipped). states: tuples of (batch, seq, hidden); mask: (batch, seq).
    """
    m = attention_mask.unsqueeze(-1).to(student_states[-1].dtype)  # (batch, seq, 1)
    denom = m.sum() * student_states[-1].shape[-1]
    per_layer = [(((s - t) ** 2) * m).sum() / denom for s, t in zip(student_states[1:], teacher_states[1:])]
    return sum(per_layer) / len(per_layer)


def distill(student, teacher, tokenizer, config: Config, data: RecoveryData, max_length: int, total: int, *,
            offset: int = 0, progress: bool = False) -> dict:
    """`total` optimiser steps of ``alpha * listwise CE(labels) + (1 - alpha) * T^2 * KL(teacher_T || student_T)``,
    plus ``prune.distill_hidden`` x `hidden_loss` when that weight is above 0.

    `offset`: groups already used by earlier calls (rounds), so each call reads the next groups.
    """
    import torch
    import torch.nn.functional as F
    from tqdm.auto import tqdm

    pc = config.prune
    torch.manual_seed(pc.seed + offset)
    teacher.eval()
    student.train()
    params = [p for p in student.parameters() if p.requires_grad]
    opt, sched = adamw_linear(params, pc.recover_lr, total)
    g, temp, alpha, nq = pc.recover_group_size, pc.distill_temperature, pc.distill_alpha, pc.recover_batch_queries
    beta = pc.distill_hidden
    t0, losses, step = time.perf_counter(), [], 0
    bar = tqdm(total=total, desc="recover", unit="step", disable=not progress)
    while step < total:
        batch = [data.groups[(offset + step * nq + i) % len(data.groups)] for i in range(nq)]
        qs = [data.queries[q] for q, ds in batch for _ in ds]
        ds = [data.texts[d] for _, dd in batch for d in dd]
        enc = tokenizer(qs, ds, truncation="only_second", max_length=max_length, padding=True, return_tensors="pt")
        enc = {k: v.to(student.device) for k, v in enc.items()}
        with torch.no_grad():
            t_out = teacher(**enc, output_hidden_states=beta > 0)
        s_out = student(**enc, output_hidden_states=beta > 0)
        t_logits = t_out.logits[:, 0].view(-1, g).float()  # (batch_queries, group)
        s_logits = s_out.logits[:, 0].view(-1, g).float()
        hard = listwise_loss(s_logits.reshape(-1), g)  # positive first in every group
        soft = F.kl_div(F.log_softmax(s_logits / temp, -1), F.log_softmax(t_logits / temp, -1),
                        log_target=True, reduction="batchmean") * temp ** 2
        loss = alpha * hard + (1 - alpha) * soft
        if beta > 0:
            loss = loss + beta * hidden_loss(s_out.hidden_states, t_out.hidden_states, enc["attention_mask"])
        losses.append(update(loss, params, opt, sched))
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{np.mean(losses[-10:]):.3f}")
        if pc.recover_time_budget_min and time.perf_counter() - t0 > pc.recover_time_budget_min * 60:
            log.warning("recovery: time budget of %.1f min reached after %d/%d steps",
                        pc.recover_time_budget_min, step, total)
            break
    bar.close()
    student.eval()
    return {"steps": step, "planned_steps": total, "groups": len(data.groups), "pseudo_groups": data.pseudo_groups,
            "seconds": round(time.perf_counter() - t0, 1),
            "first_loss": round(float(np.mean(losses[:10])), 4), "last_loss": round(float(np.mean(losses[-10:])), 4)}


@dataclass
class PruneInputs:
    """What every pruning run of one teacher shares: the model, its tokenizer and meta, and the
    importance and evaluation sets (`load_inputs`)."""
    model_path: Path
    teacher: object
    tokenizer: object
    meta: dict
    max_length: int
    imp_sets: list
    eval_sets: list
    qrels: dict


def check_prune_config(pc: PruneConfig) -> None:
    if not 0 <= pc.target < 1 or not 0 <= pc.ffn_target < 1:
        raise InputError(f"prune.target and prune.ffn_target must be in [0, 1), got {pc.target}, {pc.ffn_target}")
    if pc.recover_schedule not in ("end", "rounds"):
        raise InputError(f"prune.recover_schedule must be 'end' or 'rounds', got {pc.recover_schedule!r}")
    if pc.distill_hidden < 0:
        raise InputError(f"prune.distill_hidden must be >= 0, got {pc.distill_hidden}")


def load_inputs(config: Config, model_path: str | Path, data_dir: str | Path, device: str = "auto") -> PruneInputs:
    """Load the teacher (float32 on `device`: importance gradients and recovery need it) and the sets."""

    pc = config.prune
    dev, _ = resolve_device(device)
    teacher = load_model(model_path).to(dev)
    if not hasattr(teacher, "classifier"):
        raise InputError(f"{model_path}: not a cross-encoder (expected BertForSequenceClassification)")
    meta = read_meta(model_path)
    return PruneInputs(Path(model_path), teacher, load_tokenizer(model_path), meta,
                       pc.max_length or int(meta.get("max_length", 256)),
                       load_rerank_sets(config, data_dir, pc.importance_split, pc.depth, pc.importance_queries, pc.seed),
                       load_rerank_sets(config, data_dir, pc.eval_split, pc.depth, pc.eval_queries, pc.seed),
                       read_qrels(Path(data_dir), pc.eval_split))


def prune_student(config: Config, inp: PruneInputs, data_dir: str | Path, *, teacher_ndcg: float | None = None,
                  progress: bool = False):
    """Prune a copy of ``inp.teacher`` per ``config.prune``, recover it, evaluate it; returns (student, summary).

    `teacher_ndcg`: the teacher's nDCG@10 on the evaluation sets when already known (it is the same for
    every run over one `PruneInputs`).
    """
    import torch

    pc = config.prune
    check_prune_config(pc)
    torch.manual_seed(pc.seed)
    teacher, tokenizer, max_length = inp.teacher, inp.tokenizer, inp.max_length
    student = copy.deepcopy(teacher)
    before = H.describe(teacher)
    data = recovery_data(config, data_dir) if pc.recover_steps > 0 else None
    per_round = pc.recover_steps // max(1, pc.steps)

    def recover_round(model, step: int):  # schedule "rounds": a share of the recovery after every cut
        return distill(model, teacher, tokenizer, config, data, max_length, per_round,
                       offset=(step - 1) * per_round * pc.recover_batch_queries, progress=progress)

    interleave = pc.recover_schedule == "rounds" and data is not None and per_round > 0
    rounds = prune_iteratively(student, tokenizer, inp.imp_sets, pc, max_length,
                               after_round=recover_round if interleave else None, progress=progress)
    evaluate = lambda m: evaluate_rerank(m, tokenizer, inp.eval_sets, max_length, inp.qrels,
                                         progress=progress)["nDCG@10"]
    ndcg = {"teacher": evaluate(teacher) if teacher_ndcg is None else teacher_ndcg}
    if interleave:
        recovery = {"schedule": "rounds", "steps": sum(r.get("recovery", {}).get("steps", 0) for r in rounds),
                    "seconds": round(sum(r.get("recovery", {}).get("seconds", 0) for r in rounds), 1)}
        ndcg["recovered"] = evaluate(student)
    else:
        ndcg["pruned"] = evaluate(student)
        recovery = ({"schedule": "end", **distill(student, teacher, tokenizer, config, data, max_length,
                                                    pc.recover_steps, progress=progress)} if data else {"steps": 0})
        if recovery["steps"]:
            ndcg["recovered"] = evaluate(student)
    after = H.describe(student)
    summary = {"heads_before": before["heads_total"], "heads_after": after["heads_total"],
               "parameters_before": before["parameters"], "parameters_after": after["parameters"],
               "ffn_sizes": after["ffn_sizes"], "heads_kept": after["heads_kept"],
               "ndcg_at_10": {k: round(v, 4) for k, v in ndcg.items()},
               "eval": {"split": pc.eval_split, "queries": len(inp.eval_sets), "depth": pc.depth},
               "importance": {"split": pc.importance_split, "queries": len(inp.imp_sets)},
               "rounds": rounds, "recovery": recovery, "prune_config": asdict(pc), "teacher": str(inp.model_path),
               "device": str(next(teacher.parameters()).device)}
    return student, summary


def save_pruned(student, inp: PruneInputs, summary: dict, out_dir: str | Path) -> Path:
    """The pruned model as a cross-encoder folder; its meta is the teacher's plus ``pruning``.
    Moves `student` to the CPU."""

    meta = {k: v for k, v in inp.meta.items() if k != "format_version"}
    save_cross_encoder(student.cpu(), inp.tokenizer, out_dir,
                       {**meta, "max_length": inp.max_length, "pruning": summary})
    return Path(out_dir)


def prune_model(config: Config, model_path: str | Path, data_dir: str | Path, out_dir: str | Path | None = None,
                *, device: str = "auto", progress: bool = True) -> Path:
    """`funnel prune`: importance, iterative pruning, recovery, evaluation; saves the pruned cross-encoder."""
    check_prune_config(config.prune)
    model_path = Path(model_path)
    out_dir = Path(out_dir) if out_dir else model_path.parent / f"{model_path.name}-pruned"
    if out_dir.resolve() == model_path.resolve():
        raise InputError(f"--out {out_dir}: would overwrite the model being pruned")
    inp = load_inputs(config, model_path, data_dir, device)
    student, summary = prune_student(config, inp, data_dir, progress=progress)
    save_pruned(student, inp, summary, out_dir)
    log.info("pruned model saved to %s: %d -> %d heads, %d -> %d parameters, nDCG@10 %s", out_dir,
             summary["heads_before"], summary["heads_after"], summary["parameters_before"],
             summary["parameters_after"], json.dumps(summary["ndcg_at_10"]))
    return out_dir

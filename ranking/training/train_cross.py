"""Training of the fine-ranking cross-encoder: listwise softmax cross-entropy over one judged positive
and hard negatives from BM25, on a BEIR folder's ``train`` judgements. Feeds `funnel.ranking.models.cross_encoder`.

Each training group is (query, positive, n-1 negatives); the loss is the cross-entropy of the
softmax over the group's logits against target probabilities proportional to each document's gain
2^grade - 1 (ListNet with graded targets), which trains the model to order candidates (what it is
used for) rather than to calibrate pair-wise probabilities. Negatives are drawn from the top of
BM25's results for the query, never a document judged relevant for it, plus the documents judged
for it with a lower grade than the group's positive: with 0/1/2 judgements a grade-2 positive is
taught to rank above a grade-1 one, which keeps a quarter of the target (gain 1 against 3). With
binary judgements (SciFact) every target is one-hot on the positive, as before.

``fine.max_positives`` caps the positives of one query per epoch (drawn afresh each epoch, weighted
by gain), so a corpus with dozens of judged documents per query costs steps in proportion to its
queries, not its judgement rows.

Writes the model folder (see `funnel.ranking.models.cross_encoder`) and a JSONL training log (one line per
optimiser step: ``step``, ``loss``, ``seconds``; a last line with the summary).
"""
from __future__ import annotations

import json
import logging
import random
import time
from pathlib import Path

import numpy as np

from funnel.core.config import Config, FineConfig
from funnel.core.device import resolve_device
from funnel.core.errors import InputError
from funnel.core.judgements import gain, qrels_path, read_qrels, read_queries, sample_positives
from funnel.core.store import DocumentStore
from funnel.index.searcher import Bm25Retriever
from funnel.ranking.evaluate import evaluate
from funnel.ranking.models.backbone import load_tokenizer
from funnel.ranking.models.ce_model import head_parameters
from funnel.ranking.models.cross_encoder import build_cross_encoder, META, pair_text, save_cross_encoder
from funnel.ranking.training.optim import adamw_linear, update
from funnel.ranking.training.rerank_sets import evaluate_rerank, load_rerank_sets


log = logging.getLogger(__name__)


def mine_negatives(retriever, queries: dict[str, str], qrels: dict[str, dict[str, int]],
                   depth: int) -> dict[str, list[str]]:
    """Per judged query: BM25's top `depth` doc ids minus every document judged for it (any grade)."""
    out = {}
    for qid, judged in qrels.items():
        hits = retriever.search(queries[qid], depth)
        out[qid] = [d for d in hits.doc_ids if d not in judged]
    return out


def make_groups(qrels: dict[str, dict[str, int]], negatives: dict[str, list[str]], group_size: int,
                rng: random.Random, max_positives: int = 0) -> list[tuple[str, list[str]]]:
    """One group per (query, judged positive): [positive, negative, ...] of `group_size` doc ids.
    A positive's negatives come from BM25's unjudged hits and the documents judged lower than it."""
    groups = []
    for qid in sorted(qrels):
        negs = negatives.get(qid, [])
        for did in sample_positives(qrels[qid], max_positives, rng):
            pool = negs + sorted(d for d, g in qrels[qid].items() if g < qrels[qid][did])
            if len(pool) < group_size - 1:
                continue
            groups.append((qid, [did] + rng.sample(pool, group_size - 1)))
    rng.shuffle(groups)
    return groups


def listwise_loss(logits, group_size: int, gains=None):
    """Softmax cross-entropy of each group's logits against its targets.

    logits: (n_groups * group_size,) in group order; gains: None (the positive at position 0 is the
    one target class) or (n_groups, group_size) graded gains, normalised per group into target
    probabilities. Returns a scalar.
    """
    import torch
    import torch.nn.functional as F

    scores = logits.view(-1, group_size).float()  # (n_groups, group_size)
    if gains is None:
        target = torch.zeros(scores.shape[0], dtype=torch.long, device=scores.device)
        return F.cross_entropy(scores, target)
    target = gains / gains.sum(dim=1, keepdim=True)  # (n_groups, group_size), each row sums to 1
    return -(target * F.log_softmax(scores, dim=1)).sum(dim=1).mean()


def freeze_lower_layers(model, train_layers: int) -> None:
    """Fine-tune only the top `train_layers` encoder layers (plus pooler and head): cheaper backward."""
    if train_layers <= 0:
        return
    layers = model.bert.encoder.layer
    for p in model.bert.embeddings.parameters():
        p.requires_grad = False
    for layer in layers[: max(len(layers) - train_layers, 0)]:
        for p in layer.parameters():
            p.requires_grad = False


def train_cross_encoder(config: Config, data_dir: str | Path, out_dir: str | Path | None = None, *,
                        split: str = "train", dev_split: str = "dev", log_file: str | Path | None = None,
                        device: str = "auto", progress: bool = True) -> Path:
    """Train a cross-encoder on ``DATA/qrels/SPLIT.tsv`` with BM25 hard negatives from HOME's index.

    After each epoch, when ``DATA/qrels/DEV_SPLIT.tsv`` exists and ``fine.eval_depth`` > 0, the model
    re-ranks BM25's top ``eval_depth`` of every dev query; the epoch with the best nDCG@10 is the one
    saved (without dev judgements, the last epoch is).
    """
    import torch
    from tqdm.auto import tqdm

    fc: FineConfig = config.fine
    if fc.group_size < 2:
        raise InputError(f"fine.group_size must be at least 2 (one positive, one negative), got {fc.group_size}")
    out_dir = Path(out_dir) if out_dir else config.paths.cross_encoder
    data_dir = Path(data_dir)
    qrels = read_qrels(data_dir, split)
    queries = read_queries(data_dir)
    qrels = {q: d for q, d in qrels.items() if q in queries and any(g > 0 for g in d.values())}
    if not qrels:
        raise InputError(f"{data_dir}/qrels/{split}.tsv: no judged query with a positive found in queries.jsonl")

    rng = random.Random(fc.seed)
    torch.manual_seed(fc.seed)
    retriever = Bm25Retriever.open(config.paths.index, config.bm25)
    negatives = mine_negatives(retriever, queries, qrels, fc.negatives_depth)
    needed = {d for q in qrels for d in qrels[q]} | {d for ds in negatives.values() for d in ds}
    with DocumentStore(config.paths.store, readonly=True) as store:
        docs = store.get_many(needed)
    texts = {d: pair_text(doc.title, doc.text) for d, doc in docs.items()}
    qrels = {q: {d: g for d, g in judged.items() if d in texts} for q, judged in qrels.items()}
    groups = make_groups(qrels, negatives, fc.group_size, rng, fc.max_positives)
    if not groups:
        raise InputError(f"{data_dir}: no training group could be built (judged documents missing from the store?)")

    dev_sets, dev_qrels = [], {}
    if fc.eval_depth > 0 and qrels_path(data_dir, dev_split).exists():
        dev_sets = load_rerank_sets(config, data_dir, dev_split, fc.eval_depth, max_queries=fc.eval_queries,
                                    seed=fc.seed)
        dev_qrels = read_qrels(data_dir, dev_split)
        # "no training": the candidates in BM25's own order, the figure a trained model must beat
        bm25_order = {s.qid: {d: -float(i) for i, d in enumerate(s.doc_ids)} for s in dev_sets}
        reference = round(evaluate(bm25_order, {q: dev_qrels[q] for q in bm25_order})["nDCG@10"], 4)

    dev, _ = resolve_device(device)
    model = build_cross_encoder(fc.backbone, seed=fc.seed, pooling=fc.pooling).to(dev)
    tokenizer = load_tokenizer(fc.backbone)
    freeze_lower_layers(model, fc.train_layers)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    steps_per_epoch = (len(groups) + fc.batch_queries - 1) // fc.batch_queries
    total = steps_per_epoch * fc.epochs
    if fc.max_steps:
        total = min(total, fc.max_steps)
    opt, sched = adamw_linear(params, fc.learning_rate, total, fast_params=head_parameters(model),
                              fast_lr=fc.head_learning_rate)
    use_amp = dev.type == "cuda"
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
    log_f = open(log_file, "w", encoding="utf-8") if log_file else None
    meta = {"max_length": fc.max_length, "backbone": str(fc.backbone), "train_split": split,
            "data": str(data_dir), "fine_config": config.to_dict()["fine"]}
    best: dict = {"epoch": None, "score": float("-inf")}
    history: list[dict] = []

    def log_line(rec: dict) -> None:
        if log_f:
            log_f.write(json.dumps(rec) + "\n")
            log_f.flush()

    def end_of_epoch(epoch: int) -> None:
        """Dev check; the best epoch so far is saved (every epoch is, without dev judgements)."""
        rec = {"eval": dev_split, "epoch": epoch, "seconds": round(time.perf_counter() - t0, 1)}
        model.eval()
        if dev_sets:
            rec["nDCG@10"] = round(evaluate_rerank(model, tokenizer, dev_sets, fc.max_length, dev_qrels)["nDCG@10"], 4)
            log.info("cross-encoder epoch %d: dev nDCG@10 %.4f (BM25 top %d re-ranked)", epoch, rec["nDCG@10"],
                     fc.eval_depth)
        history.append(rec)
        log_line(rec)
        if not dev_sets or rec["nDCG@10"] > best["score"]:
            best.update(epoch=epoch, score=rec.get("nDCG@10"))
            save_cross_encoder(model, tokenizer, out_dir, {**meta, "epoch": epoch, "dev": rec})
        model.train()

    t0 = time.perf_counter()
    if dev_sets:
        log_line({"eval": dev_split, "epoch": 0, "nDCG@10": reference, "ranker": "bm25"})
    step, losses, stopped_early = 0, [], False
    bar = tqdm(total=total, desc="cross-encoder", unit="step", disable=not progress)
    try:
        for epoch in range(fc.epochs):
            if epoch:
                groups = make_groups(qrels, negatives, fc.group_size, rng, fc.max_positives)  # fresh draw each epoch
            for start in range(0, len(groups), fc.batch_queries):
                batch = groups[start:start + fc.batch_queries]
                qs = [queries[q] for q, ds in batch for _ in ds]
                ds = [texts[d] for _, dd in batch for d in dd]
                enc = tokenizer(qs, ds, truncation="only_second", max_length=fc.max_length, padding=True,
                                return_tensors="pt")
                enc = {k: v.to(dev) for k, v in enc.items()}
                with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_amp):
                    logits = model(**enc).logits[:, 0]  # (n_groups * group_size,)
                gains = torch.tensor([[gain(qrels[q].get(d, 0)) for d in dd] for q, dd in batch],
                                     device=dev)  # (n_groups, group_size)
                losses.append(update(listwise_loss(logits, fc.group_size, gains), params, opt, sched))
                step += 1
                elapsed = time.perf_counter() - t0
                log_line({"step": step, "epoch": epoch, "loss": round(losses[-1], 5), "seconds": round(elapsed, 3)})
                bar.update(1)
                bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
                if step >= total:
                    break
                if fc.time_budget_min and elapsed > fc.time_budget_min * 60:
                    stopped_early = True
                    log.warning("cross-encoder: time budget of %.1f min reached after %d/%d steps",
                                fc.time_budget_min, step, total)
                    break
            end_of_epoch(epoch + 1)
            if stopped_early or step >= total:
                break
    finally:
        bar.close()
    summary = {"steps": step, "planned_steps": total, "groups": len(groups), "train_queries": len(qrels),
               "seconds": round(time.perf_counter() - t0, 1), "first_loss": round(float(np.mean(losses[:20])), 4),
               "last_loss": round(float(np.mean(losses[-20:])), 4), "stopped_by_time_budget": stopped_early,
               "device": str(dev), "best_epoch": best["epoch"], "dev": history}
    if dev_sets:
        summary["bm25_dev_nDCG@10"] = reference
        summary["beats_bm25"] = bool(best["score"] > reference)
        if not summary["beats_bm25"]:
            log.warning("cross-encoder: best dev nDCG@10 %.4f does not beat BM25's own order (%.4f) on the same "
                        "candidates; the fine stage may hurt (pipeline.stages without 'fine' turns it off)",
                        best["score"], reference)
    log_line({"summary": summary})
    if log_f:
        log_f.close()
    # the saved checkpoint (best epoch) gets the whole run's summary beside its own dev line
    meta_file = out_dir / META
    saved = json.loads(meta_file.read_text(encoding="utf-8"))
    meta_file.write_text(json.dumps({**saved, "training": summary}, indent=2), encoding="utf-8")
    log.info("cross-encoder saved to %s (epoch %s of %d; %s)", out_dir, best["epoch"], len(history), summary)
    return out_dir

"""Training of the dense-recall dual encoder (`funnel.ranking.models.dual_encoder`): contrastive InfoNCE on a BEIR
folder's ``train`` judgements with in-batch and BM25-mined hard negatives, or, without judgements,
on pseudo-query pairs from the store's own documents (random crops, or single sentences as in the
Inverse Cloze Task). Feeds `funnel embed` and `funnel.ranking.serving.recall`.

Loss: for each query q_i, softmax cross-entropy over its similarities to every document of the batch
(its positive, its hard negatives, and every other query's positive and negatives), scaled by
1 / temperature, with its own positive as the target. Documents judged for q_i (any grade) other
than its target are masked out, so a shared positive is never pushed away.

Towers (``train_dense.towers``; ``auto``, the default, is ``shared`` on a GPU and ``query`` on a CPU):
- ``shared``: one BERT for queries and documents, fully fine-tuned (what a GPU is for).
  The corpus is re-encoded for every dev evaluation.
- ``query``: the document tower is frozen (kept as the model's ``doc_tower``), so document vectors
  are computed once (or read from an existing vector index made by that tower) and only the query
  tower learns. A fraction of the cost on a CPU, any number of hard negatives is free, and the
  vector index stays valid after training (no re-embedding).

Every epoch ends with a dev evaluation (nDCG@10, R@100 over the whole corpus, exact search); the best
epoch's model is the one kept in the output folder. Seeds fix data order, negatives and init.

Writes the model folder (see `funnel.ranking.models.dual_encoder`) and a JSONL log: one line per step
(``step``, ``epoch``, ``loss``, ``seconds``), one per dev evaluation (``eval``, ``epoch``, metrics),
and a summary line.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import random
import re
import time
from pathlib import Path

import numpy as np

from funnel.core.config import Config, TrainDenseConfig
from funnel.core.device import resolve_device
from funnel.core.errors import InputError
from funnel.core.judgements import qrels_path, read_qrels, read_queries, sample_positives
from funnel.core.store import DocumentStore
from funnel.index.searcher import Bm25Retriever
from funnel.index.vectors import exact_search, read_manifest, VectorIndex
from funnel.ranking.evaluate import evaluate
from funnel.ranking.models.dual_encoder import build_dual_encoder, doc_text, save_dual_encoder, tower_fingerprint
from funnel.ranking.training.optim import adamw_linear, update


log = logging.getLogger(__name__)


def mine_negatives(retriever, queries: dict[str, str], judged: dict[str, set[str]], depth: int) -> dict[str, list[str]]:
    """Per query: BM25's top `depth` doc ids minus every document judged for it (never a positive)."""
    return {qid: [d for d in retriever.search(queries[qid], depth).doc_ids if d not in judged.get(qid, ())]
            for qid in queries}


def make_examples(positives: dict[str, list[str]], negatives: dict[str, list[str]], n_neg: int,
                  rng: random.Random, grades: dict[str, dict[str, int]] | None = None,
                  max_positives: int = 0) -> list[tuple[str, str, list[str]]]:
    """(query id, positive doc id, n_neg hard negative ids) per judged pair, shuffled. With
    `max_positives`, at most that many positives per query, drawn by grade (`grades`) afresh per call."""
    out = []
    for qid in sorted(positives):
        negs = negatives.get(qid, [])
        if n_neg and len(negs) < n_neg:
            continue
        pos_ids = positives[qid]
        if max_positives and len(pos_ids) > max_positives:
            judged = {d: (grades or {}).get(qid, {}).get(d, 1) for d in pos_ids}
            pos_ids = sample_positives(judged, max_positives, rng)
        for pos in pos_ids:
            out.append((qid, pos, rng.sample(negs, n_neg) if n_neg else []))
    rng.shuffle(out)
    return out


def crop_pairs(docs: list[tuple[str, str]], n_pairs: int, rng: random.Random, *, min_words: int = 8,
               max_frac: float = 0.5) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Unsupervised pairs by independent random cropping: the query is a random word span of a
    document (its positive). Returns ({pseudo query id: text}, {pseudo query id: [doc id]})."""
    usable = [(d, t.split()) for d, t in docs if len(t.split()) >= 2 * min_words]
    if not usable:
        raise InputError("unsupervised training: no document has enough words to crop")
    queries, positives = {}, {}
    for i in range(n_pairs):
        doc_id, words = usable[rng.randrange(len(usable))]
        length = rng.randint(min_words, max(min_words, int(len(words) * max_frac)))
        start = rng.randrange(0, len(words) - length + 1)
        qid = f"crop-{i}"
        queries[qid] = " ".join(words[start:start + length])
        positives[qid] = [doc_id]
    return queries, positives


SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(])")


def sentence_pairs(docs: list[tuple[str, str]], n_pairs: int, rng: random.Random, *, min_words: int = 6,
                   max_words: int = 40) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Unsupervised pairs in the manner of the Inverse Cloze Task: the query is one sentence of a
    document (its positive), a short declarative statement like a claim or a question's premise.
    Returns ({pseudo query id: text}, {pseudo query id: [doc id]})."""
    usable = []
    for d, t in docs:
        sents = [s for s in SENTENCE_END.split(t) if min_words <= len(s.split()) <= max_words]
        if len(sents) >= 2:  # a one-sentence document would be its own query
            usable.append((d, sents))
    if not usable:
        raise InputError(f"unsupervised training: no document has two sentences of {min_words}-{max_words} words")
    queries, positives = {}, {}
    for i in range(n_pairs):
        doc_id, sents = usable[rng.randrange(len(usable))]
        qid = f"sent-{i}"
        queries[qid] = sents[rng.randrange(len(sents))]
        positives[qid] = [doc_id]
    return queries, positives


UNSUPERVISED_PAIRS = {"crop": crop_pairs, "sentence": sentence_pairs}


def info_nce(q, d, targets, mask, temperature: float):
    """InfoNCE over in-batch documents.

    q: (batch, dim) unit query vectors; d: (n_docs, dim) unit document vectors; targets: (batch,)
    index of each query's positive in d; mask: (batch, n_docs) bool, True where a document must not
    count as a negative (judged for that query, not its target). Returns the mean loss (scalar).
    """
    import torch.nn.functional as F

    logits = (q @ d.T) / temperature  # (batch, n_docs)
    logits = logits.masked_fill(mask, float("-inf"))
    return F.cross_entropy(logits.float(), targets)


def batch_tensors(batch, judged: dict[str, set[str]]):
    """Documents of a batch (deduplicated, order: each example's positive then negatives), targets and mask."""
    import torch

    doc_ids: list[str] = []
    pos_of: dict[str, int] = {}
    for _, pos, negs in batch:
        for did in [pos] + negs:
            if did not in pos_of:
                pos_of[did] = len(doc_ids)
                doc_ids.append(did)
    targets = torch.tensor([pos_of[pos] for _, pos, _ in batch], dtype=torch.long)
    mask = torch.zeros(len(batch), len(doc_ids), dtype=torch.bool)
    for i, (qid, pos, _) in enumerate(batch):
        for did in judged.get(qid, ()):
            j = pos_of.get(did)
            if j is not None and did != pos:
                mask[i, j] = True
    return doc_ids, targets, mask


def evaluate_dense(model, doc_ids: list[str], doc_vecs: np.ndarray, queries: dict[str, str],
                   qrels: dict[str, dict[str, int]], k: int = 100, batch_size: int = 64) -> dict[str, float]:
    """Exact dense retrieval of `qrels`' queries against (doc_ids, doc_vecs): nDCG@10, R@100, ..."""

    qids = sorted(q for q in qrels if q in queries)
    qv = model.encode_queries([queries[q] for q in qids], batch_size)  # (nq, dim)
    scores, rows = exact_search(doc_vecs, qv, k)
    run = {q: {doc_ids[r]: float(s) for r, s in zip(rr, ss)} for q, rr, ss in zip(qids, rows, scores)}
    return evaluate(run, {q: qrels[q] for q in qids})


def _doc_vectors(config: Config, model, tower_hash: str, doc_ids: list[str], texts: list[str], batch_size: int,
                 progress: bool) -> np.ndarray:
    """Frozen-tower document vectors: from HOME's vector index when the same tower made it, else encoded."""

    vdir = config.paths.dense_index
    manifest = read_manifest(vdir)
    if manifest and manifest.get("meta", {}).get("doc_hash") == tower_hash \
            and manifest.get("meta", {}).get("doc_max_len") == model.doc_max_len:
        vi = VectorIndex(vdir, backend="exact")
        vecs, found = vi.lookup(doc_ids)
        if found.all():
            log.info("document vectors read from %s (same frozen document tower)", vdir)
            return vecs
    return model.encode_docs(texts, batch_size, progress=progress)


def resolve_towers(towers: str, device) -> str:
    """``train_dense.towers`` made concrete: "auto" is "shared" on a GPU, "query" on a CPU."""
    return towers if towers != "auto" else ("shared" if device.type == "cuda" else "query")


def train_dual_encoder(config: Config, data_dir: str | Path | None = None, out_dir: str | Path | None = None, *,
                       split: str = "train", dev_split: str = "dev", log_file: str | Path | None = None,
                       device: str = "auto", progress: bool = True, exclude: frozenset[str] = frozenset()) -> dict:
    """Train a dual encoder; returns the summary (best epoch, dev metrics, paths).

    Supervised: ``DATA/qrels/SPLIT.tsv`` judgements with BM25 hard negatives from HOME's index.
    Unsupervised (``train_dense.unsupervised``): pseudo-query pairs from HOME's store (DATA optional,
    used only for the dev evaluation). ``exclude``: training query ids left out (`funnel.ranking.training.cross_fit`).
    """
    import torch
    from tqdm.auto import tqdm

    tc: TrainDenseConfig = config.train_dense
    if tc.towers not in ("auto", "shared", "query"):
        raise InputError(f"train_dense.towers must be 'auto', 'shared' or 'query', got {tc.towers!r}")
    if tc.temperature <= 0:
        raise InputError(f"train_dense.temperature must be positive, got {tc.temperature}")
    if tc.batch_size < 1 or tc.hard_negatives < 0:
        raise InputError("train_dense.batch_size must be >= 1 and train_dense.hard_negatives >= 0")
    if tc.unsupervised_mode not in UNSUPERVISED_PAIRS:
        raise InputError(f"train_dense.unsupervised_mode must be one of {', '.join(UNSUPERVISED_PAIRS)}, "
                         f"got {tc.unsupervised_mode!r}")
    if data_dir is None and not tc.unsupervised:
        raise InputError("supervised training needs a BEIR folder (--data); or set train_dense.unsupervised=true")
    out_dir = Path(out_dir) if out_dir else config.paths.dual_encoder
    rng = random.Random(tc.seed)
    np.random.seed(tc.seed)
    torch.manual_seed(tc.seed)

    if not config.paths.store.exists():
        raise InputError(f"no document store at {config.paths.store}: ingest a corpus first")
    with DocumentStore(config.paths.store, readonly=True) as store:
        all_docs = list(store.iter_docs())
    corpus_ids = [d.doc_id for d in all_docs]
    corpus_texts = [doc_text(d.title, d.text) for d in all_docs]
    text_of = dict(zip(corpus_ids, corpus_texts))

    dev_queries, dev_qrels = {}, {}
    if data_dir is not None and qrels_path(Path(data_dir), dev_split).exists():
        dev_queries = read_queries(Path(data_dir))
        dev_qrels = read_qrels(Path(data_dir), dev_split)
    if tc.unsupervised:
        queries, positives = UNSUPERVISED_PAIRS[tc.unsupervised_mode](list(text_of.items()), tc.unsupervised_pairs, rng)
        judged = {q: set(p) for q, p in positives.items()}
        grades = None
    else:
        all_queries = read_queries(Path(data_dir))
        qrels = read_qrels(Path(data_dir), split)
        positives = {q: sorted(d for d, g in j.items() if g > 0 and d in text_of) for q, j in qrels.items()
                     if q in all_queries and q not in exclude}
        positives = {q: p for q, p in positives.items() if p}
        if not positives:
            raise InputError(f"{data_dir}/qrels/{split}.tsv: no judged positive found in queries.jsonl and the store")
        queries = {q: all_queries[q] for q in positives}
        judged = {q: set(qrels[q]) for q in positives}
        grades = {q: qrels[q] for q in positives}
    negatives = {}
    if tc.hard_negatives:
        retriever = Bm25Retriever.open(config.paths.index, config.bm25)
        negatives = mine_negatives(retriever, queries, judged, tc.negatives_depth)

    dev, amp_dtype = resolve_device(device)
    model = build_dual_encoder(tc.backbone, shared=True, query_max_len=tc.query_max_len,
                               doc_max_len=tc.doc_max_len, seed=tc.seed)
    towers = resolve_towers(tc.towers, dev)
    frozen_docs = towers == "query"
    doc_cache: dict[str, int] = {}
    cache_vecs = None
    if frozen_docs:
        import copy

        model.doc_tower = copy.deepcopy(model.query_tower)
        for p in model.doc_tower.parameters():
            p.requires_grad = False
    model.to(dev)
    doc_hash = tower_fingerprint(model.doc_tower) if frozen_docs else None
    if frozen_docs:  # encode every document once with the frozen tower
        cache_vecs = _doc_vectors(config, model, doc_hash, corpus_ids, corpus_texts, 64, progress)
        doc_cache = {d: i for i, d in enumerate(corpus_ids)}

    def dev_eval(epoch: int) -> dict | None:
        if not dev_qrels:
            return None
        vecs = cache_vecs if frozen_docs else model.encode_docs(corpus_texts, 64, progress=progress)
        return evaluate_dense(model, corpus_ids, vecs, dev_queries, dev_qrels)

    params = [p for p in model.parameters() if p.requires_grad]
    examples = make_examples(positives, negatives, tc.hard_negatives, rng, grades, tc.max_positives)
    steps_per_epoch = max(1, (len(examples) + tc.batch_size - 1) // tc.batch_size)
    total = steps_per_epoch * tc.epochs
    if tc.max_steps:
        total = min(total, tc.max_steps)
    opt, sched = adamw_linear(params, tc.learning_rate, total)
    use_amp = tc.amp and dev.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
    log_f = open(log_file, "w", encoding="utf-8") if log_file else None

    def write(rec: dict) -> None:
        if log_f:
            log_f.write(json.dumps(rec) + "\n")
            log_f.flush()

    t0 = time.perf_counter()
    meta = {"backbone": tc.backbone, "towers": towers, "train_config": dataclasses.asdict(tc),
            "data": str(data_dir) if data_dir else None, "split": split}
    best = {"epoch": 0, "metrics": dev_eval(0)}
    write({"eval": dev_split, "epoch": 0, **(best["metrics"] or {}), "seconds": round(time.perf_counter() - t0, 1)})
    if best["metrics"] is not None:
        log.info("epoch 0 (start) dev nDCG@10 %.4f", best["metrics"]["nDCG@10"])
    save_dual_encoder(model, out_dir, {**meta, "epoch": 0, "dev": best["metrics"]})
    step, losses, stopped = 0, [], False
    bar = tqdm(total=total, desc="dual-encoder", unit="step", disable=not progress)
    try:
        for epoch in range(1, tc.epochs + 1):
            if epoch > 1:
                examples = make_examples(positives, negatives, tc.hard_negatives, rng, grades,
                                         tc.max_positives)  # fresh negatives (and positives, when capped)
            model.train()
            if frozen_docs:
                model.doc_tower.eval()
            for start in range(0, len(examples), tc.batch_size):
                batch = examples[start:start + tc.batch_size]
                doc_ids, targets, mask = batch_tensors(batch, judged)
                with torch.autocast(dev.type, dtype=amp_dtype, enabled=use_amp):
                    q = model.embed(model.tokenize([queries[qid] for qid, _, _ in batch], tc.query_max_len))
                    if frozen_docs:
                        d = torch.from_numpy(cache_vecs[[doc_cache[x] for x in doc_ids]]).to(dev)
                    else:
                        d = model.embed(model.tokenize([text_of[x] for x in doc_ids], tc.doc_max_len), "doc")
                    loss = info_nce(q, d, targets.to(dev), mask.to(dev), tc.temperature)  # (batch, n_docs) inside
                losses.append(update(loss, params, opt, sched, scaler))
                step += 1
                write({"step": step, "epoch": epoch, "loss": round(losses[-1], 5),
                       "seconds": round(time.perf_counter() - t0, 3)})
                bar.update(1)
                bar.set_postfix(loss=f"{losses[-1]:.3f}")
                if step >= total:
                    break
                if tc.time_budget_min and time.perf_counter() - t0 > 60 * tc.time_budget_min:
                    stopped = True
                    break
            metrics = dev_eval(epoch)
            write({"eval": dev_split, "epoch": epoch, **(metrics or {}), "seconds": round(time.perf_counter() - t0, 1)})
            if metrics is None or best["metrics"] is None or metrics["nDCG@10"] > best["metrics"]["nDCG@10"]:
                best = {"epoch": epoch, "metrics": metrics}
                save_dual_encoder(model, out_dir, {**meta, "epoch": epoch, "dev": metrics})
            if metrics is not None:
                log.info("epoch %d dev nDCG@10 %.4f (best: epoch %d)", epoch, metrics["nDCG@10"], best["epoch"])
            if stopped:
                log.info("time budget of %.1f min reached", tc.time_budget_min)
                break
            if step >= total:
                break
    finally:
        bar.close()
    summary = {"summary": True, "steps": step, "best_epoch": best["epoch"], "dev": best["metrics"],
               "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None,
               "seconds": round(time.perf_counter() - t0, 1), "stopped_by_budget": stopped, "model": str(out_dir),
               "device": str(dev), "examples": len(examples)}
    write(summary)
    if log_f:
        log_f.close()
    return summary

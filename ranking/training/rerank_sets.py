"""Judged candidate sets for the cross-encoder: each judged query's BM25 top-k with its grades, and
nDCG@10 of a model re-ranking them. Used by cross-encoder training (the per-epoch dev check that keeps
the best checkpoint) and by pruning (head importance, and the before/after quality check).
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from funnel.core.config import Config
from funnel.core.errors import InputError
from funnel.core.judgements import read_qrels, read_queries
from funnel.core.store import DocumentStore
from funnel.index.searcher import Bm25Retriever
from funnel.ranking.evaluate import evaluate
from funnel.ranking.models.cross_encoder import pair_text



@dataclass
class RerankSet:
    """One query's BM25 candidates with their judgements (what importance and evaluation use)."""
    qid: str
    query: str
    doc_ids: list[str]
    texts: list[str]
    labels: np.ndarray  # float32 (n,) relevance grade of each candidate (0 when unjudged)


def load_rerank_sets(config: Config, data_dir: str | Path, split: str, depth: int,
                     max_queries: int = 0, seed: int = 0) -> list[RerankSet]:
    """BM25 top-`depth` of every judged query of ``DATA/qrels/SPLIT.tsv`` (optionally a seeded sample)."""

    data_dir = Path(data_dir)
    qrels = read_qrels(data_dir, split)
    queries = read_queries(data_dir)
    qids = sorted(q for q in qrels if q in queries)
    if not qids:
        raise InputError(f"{data_dir}/qrels/{split}.tsv: no judged query found in queries.jsonl")
    if max_queries and len(qids) > max_queries:
        qids = sorted(random.Random(seed).sample(qids, max_queries))
    retriever = Bm25Retriever.open(config.paths.index, config.bm25)
    hits = {q: retriever.search(queries[q], depth).doc_ids for q in qids}
    with DocumentStore(config.paths.store, readonly=True) as store:
        docs = store.get_many({d for ds in hits.values() for d in ds})
    sets = []
    for q in qids:
        ids = [d for d in hits[q] if d in docs]
        sets.append(RerankSet(q, queries[q], ids, [pair_text(docs[d].title, docs[d].text) for d in ids],
                              np.array([qrels[q].get(d, 0) for d in ids], dtype=np.float32)))
    return sets


def score_pairs(model, tokenizer, query: str, texts: list[str], max_length: int, batch_size: int = 32):
    """Cross-encoder logits (n,) for one query and its documents; keeps the autograd graph.
    No documents (a query BM25 found nothing for) gives an empty (0,) tensor."""
    import torch

    if not texts:
        return torch.zeros(0, device=model.device)
    out = []
    for start in range(0, len(texts), batch_size):
        chunk = texts[start:start + batch_size]
        enc = tokenizer([query] * len(chunk), chunk, truncation="only_second", max_length=max_length,
                        padding=True, return_tensors="pt")
        enc = {k: v.to(model.device) for k, v in enc.items()}
        out.append(model(**enc).logits[:, 0])  # (chunk,)
    return torch.cat(out)


def evaluate_rerank(model, tokenizer, sets: list[RerankSet], max_length: int, qrels, *,
                    progress: bool = False) -> dict[str, float]:
    """nDCG@10 (and the other standard metrics) of re-ranking each set's candidates; a set without
    candidates is an empty ranking (it scores 0, as it does for the funnel)."""
    import torch
    from tqdm.auto import tqdm

    model.eval()
    run = {}
    with torch.inference_mode():
        for s in tqdm(sets, desc="evaluate", unit="query", disable=not progress):
            if not s.doc_ids:
                run[s.qid] = {}
                continue
            scores = score_pairs(model, tokenizer, s.query, s.texts, max_length).float().cpu().numpy()
            run[s.qid] = {d: float(x) for d, x in zip(s.doc_ids, scores)}
    return evaluate(run, {q: qrels[q] for q in run})

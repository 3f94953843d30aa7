"""Evaluation: runs + judgements -> IR metrics (pytrec_eval, the trec_eval implementation), TREC run files.

Metrics are averaged over every judged query; a query the system returned nothing for counts as 0.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytrec_eval

from funnel.core.errors import InputError
from funnel.core.judgements import read_lines, read_qrels, read_queries
from funnel.index.searcher import Bm25Retriever

Run = dict[str, dict[str, float]]  # query id -> {doc id: score}

METRICS = ("nDCG@10", "Recall@100", "Recall@1000", "MRR@10", "MAP")
_TREC = {"nDCG@10": "ndcg_cut_10", "Recall@100": "recall_100", "Recall@1000": "recall_1000", "MAP": "map"}


def truncate(run: Run, k: int) -> Run:
    return {q: dict(sorted(d.items(), key=lambda x: (-x[1], x[0]))[:k]) for q, d in run.items()}


def per_query(run: Run, qrels: dict[str, dict[str, int]], metrics=METRICS) -> dict[str, dict[str, float]]:
    """Each metric for each judged query (one with a grade > 0); a query missing from the run scores 0."""
    qrels = {q: d for q, d in qrels.items() if any(g > 0 for g in d.values())}
    run = {q: run.get(q, {}) for q in qrels}
    trec = {"ndcg_cut", "recall", "map", "recip_rank"}
    scored = pytrec_eval.RelevanceEvaluator(qrels, trec).evaluate(run)
    at10 = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(truncate(run, 10))
    out: dict[str, dict[str, float]] = {}
    for q in qrels:
        out[q] = {m: float(at10.get(q, {}).get("recip_rank", 0.0)) if m == "MRR@10"
                  else float(scored.get(q, {}).get(_TREC[m], 0.0)) for m in metrics}
    return out


def evaluate(run: Run, qrels: dict[str, dict[str, int]], metrics=METRICS) -> dict[str, float]:
    """Mean of each metric over the judged queries."""
    rows = per_query(run, qrels, metrics)
    return {m: float(np.mean([r[m] for r in rows.values()])) if rows else 0.0 for m in metrics}


def read_trec_run(path: str | Path) -> Run:
    """A TREC run file (``qid Q0 docid rank score tag``, whitespace-separated) -> {qid: {docid: score}}."""
    path = Path(path)
    run: Run = {}
    for lineno, line in read_lines(path):
        cols = line.split()
        if len(cols) != 6:
            raise InputError(f"{path}:{lineno}: expected 6 columns (qid Q0 docid rank score tag), got {len(cols)}")
        try:
            score = float(cols[4])
        except ValueError:
            raise InputError(f"{path}:{lineno}: score must be a number, got {cols[4]!r}") from None
        run.setdefault(cols[0], {})[cols[2]] = score
    return run


def write_trec_run(run: Run, path: str | Path, tag: str = "funnel") -> Path:
    """TREC run format: ``qid Q0 docid rank score tag``, best first per query."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for q in sorted(run):
            for rank, (d, s) in enumerate(sorted(run[q].items(), key=lambda x: (-x[1], x[0])), 1):
                f.write(f"{q} Q0 {d} {rank} {s:.6f} {tag}\n")
    return path


def format_table(rows: list[dict], columns: list[str]) -> str:
    """Markdown table of dict rows (floats with 4 decimals)."""
    def fmt(v):
        return f"{v:.4f}" if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def evaluate_retriever(index_dir, bm25_config, data_dir, split: str, k: int = 1000, run_file=None,
                       progress: bool = True) -> dict:
    """BM25 / TF-IDF over a split's judged queries: metrics (plus ``queries``), and the run as a TREC file."""
    from tqdm.auto import tqdm

    qrels = read_qrels(Path(data_dir), split)
    queries = read_queries(Path(data_dir))
    missing = [q for q in qrels if q not in queries]
    if missing:
        raise InputError(f"{data_dir}/qrels/{split}.tsv: {len(missing)} query ids not in queries.jsonl "
                         f"(first: {missing[0]!r})")
    retriever = Bm25Retriever.open(index_dir, bm25_config)
    run: Run = {}
    for qid in tqdm(sorted(qrels), desc="queries", disable=not progress):
        hits = retriever.search(queries[qid], k)
        run[qid] = dict(zip(hits.doc_ids, hits.scores.tolist()))
    if run_file is not None:
        write_trec_run(run, run_file, tag=bm25_config.scorer)
    return {"queries": len(qrels), **evaluate(run, qrels)}

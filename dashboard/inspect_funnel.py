"""What the dashboard shows, as plain functions over a `SearchService` (no Streamlit here, so tests
can check the numbers): per-stage tables with rank movement, LightGBM feature contributions, the
cross-encoder's attention, PageRank's top pages, a document's link neighbourhood, per-stage metrics.

Each function returns pandas DataFrames (or None when the artifact it needs is not built yet); the
Streamlit app (`dashboard/app.py`) only lays them out and plots them.
"""
from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from funnel.api.service import SearchResult, SearchService
from funnel.index.pagerank import load_pagerank
from funnel.ranking.evaluate import evaluate


RESULTS_DIR = Path(__file__).resolve().parent.parent / "benchmarks" / "results"


def movement(prev_rank: int | None, rank: int, first_stage: bool) -> str:
    """Rank movement against the previous stage: "↑3", "↓1", "=", or "new" (came from below its cut)."""
    if first_stage:
        return ""
    if prev_rank is None:
        return "new"
    d = prev_rank - rank
    return "=" if d == 0 else (f"↑{d}" if d > 0 else f"↓{-d}")


def stage_frames(service: SearchService, result: SearchResult) -> list[tuple[str, float, int, pd.DataFrame]]:
    """(stage, ms, candidates, table) per stage; the table's rows: rank, movement, score, doc_id, title."""
    ids = {r.doc_id for t in result.stages for r in t.rows}
    docs = service.store.get_many(sorted(ids))
    out = []
    for i, t in enumerate(result.stages):
        rows = [{"rank": r.rank, "move": movement(r.prev_rank, r.rank, i == 0),
                 "prev rank": r.prev_rank, "score": round(r.score, 4), "doc_id": r.doc_id,
                 "title": docs[r.doc_id].title if r.doc_id in docs else ""} for r in t.rows]
        out.append((t.stage, t.ms, t.n_candidates, pd.DataFrame(rows)))
    return out


def rank_paths(result: SearchResult) -> pd.DataFrame:
    """Long table (doc_id, stage, stage_no, rank) of the final hits through every stage (slope chart)."""
    final = [h.doc_id for h in result.hits]
    rows = []
    for no, t in enumerate(result.stages):
        pos = {r.doc_id: r.rank for r in t.rows}
        for d in final:
            if d in pos:
                rows.append({"doc_id": d, "stage": f"{no + 1}. {t.stage}", "stage_no": no, "rank": pos[d]})
    return pd.DataFrame(rows, columns=["doc_id", "stage", "stage_no", "rank"])


def hit_features(result: SearchResult) -> pd.DataFrame:
    """Features of every final hit (rows) as the stages computed them (columns)."""
    frame = pd.DataFrame(result.features)
    frame.insert(0, "doc_id", [h.doc_id for h in result.hits][:len(frame)] if len(frame) else [])
    return frame


def _stage(service: SearchService, profile: str, name: str):
    for stage, _ in service.pipeline(profile).stages:
        if getattr(stage, "name", None) == name:
            return stage
    return None


def coarse_contributions(service: SearchService, result: SearchResult, doc_id: str) -> pd.DataFrame | None:
    """LightGBM SHAP-style contributions (``pred_contrib``) of each feature to `doc_id`'s coarse score.

    None when the profile has no coarse stage or `doc_id` lacks features (it left before coarse).
    """
    stage = _stage(service, result.profile, "coarse")
    cands = result.candidates
    if stage is None or cands is None or doc_id not in cands.doc_ids:
        return None
    names = stage.model.features
    if any(n not in cands.features for n in names):
        return None
    i = cands.doc_ids.index(doc_id)
    x = np.array([[float(cands.features[n][i]) for n in names]])  # (1, n_features)
    best = stage.model.meta.get("best_iteration") or None
    contrib = stage.model.booster.predict(x, num_iteration=best, pred_contrib=True)[0]  # (n_features + 1,)
    frame = pd.DataFrame({"feature": names + ["(bias)"], "value": list(x[0]) + [np.nan],
                          "contribution": contrib})
    return frame.sort_values("contribution", key=np.abs, ascending=False, ignore_index=True)


@dataclass
class Attention:
    tokens: list[str]
    cls_weights: np.ndarray  # (seq,) chosen layer and head (or mean over heads): what [CLS] reads
    query_to_doc: np.ndarray  # (n_query_tokens, n_doc_tokens) chosen layer and head (or mean over heads)
    query_tokens: list[str]
    doc_tokens: list[str]
    logit: float
    layer: int = -1  # the layer shown (0-based; -1: the last)
    head: int | None = None  # the head shown; None: mean over heads
    n_layers: int = 0
    n_heads: int = 0


def cross_encoder_attention(service: SearchService, profile: str, query: str, doc_id: str,
                            max_doc_tokens: int = 48, layer: int = -1, head: int | None = None) -> Attention | None:
    """The fine stage's attention for one (query, document) pair in `layer` (0-based, -1: the last),
    one `head` or the mean over heads (None); None without a trained cross-encoder."""
    stage = _stage(service, profile, "fine")
    if stage is None:
        return None
    import torch

    enc_model = stage.encoder
    model, tok = enc_model.model, enc_model.tokenizer
    text = stage.texts([doc_id])[0]
    enc = tok([query], [text], truncation="only_second", max_length=enc_model.max_length, return_tensors="pt")
    enc = {k: v.to(enc_model.device) for k, v in enc.items()}
    previous = getattr(model.config, "_attn_implementation", None)
    switch = previous not in (None, "eager") and hasattr(model, "set_attn_implementation")
    with service.exclusive(profile):  # the model is shared with the pipeline: no query runs meanwhile
        try:  # fused (sdpa) attention returns no weights: compute this one pair with the eager kernel
            if switch:
                model.set_attn_implementation("eager")
            with torch.inference_mode():
                out = model(**enc, output_attentions=True)
        finally:
            if switch:
                model.set_attn_implementation(previous)
    if not out.attentions:
        return None
    n_layers = len(out.attentions)
    layer = layer if -n_layers <= layer < n_layers else -1
    per_head = out.attentions[layer][0].float()  # (heads, seq, seq)
    n_heads = per_head.shape[0]
    head = head if head is not None and 0 <= head < n_heads else None
    last = (per_head.mean(0) if head is None else per_head[head]).cpu().numpy()  # (seq, seq)
    ids = enc["input_ids"][0].tolist()
    tokens = tok.convert_ids_to_tokens(ids)
    types = enc.get("token_type_ids")
    types = types[0].tolist() if types is not None else [0] * len(ids)
    q_pos = [i for i, (t, ty) in enumerate(zip(tokens, types)) if ty == 0 and t not in ("[CLS]", "[SEP]")]
    d_pos = [i for i, (t, ty) in enumerate(zip(tokens, types)) if ty == 1 and t != "[SEP]"][:max_doc_tokens]
    return Attention(tokens, last[0], last[np.ix_(q_pos, d_pos)], [tokens[i] for i in q_pos],
                     [tokens[i] for i in d_pos], float(out.logits[0, 0]), layer % n_layers, head, n_layers, n_heads)


def pagerank_top(service: SearchService, n: int = 20) -> pd.DataFrame | None:
    """The `n` pages with the highest PageRank (None when PageRank was not computed)."""

    pr = load_pagerank(service.config.paths.home)
    if not pr:
        return None
    top = sorted(pr.items(), key=lambda x: -x[1])[:n]
    docs = service.store.get_many([d for d, _ in top])
    return pd.DataFrame([{"rank": i + 1, "doc_id": d, "pagerank": v,
                          "title": docs[d].title if d in docs else "", "url": docs[d].url if d in docs else None}
                         for i, (d, v) in enumerate(top)])


class LinkGraph:
    """In- and out-links of every stored document (loaded once; links point at URLs or doc ids)."""

    def __init__(self, store):
        self.out: dict[str, list[str]] = {}
        self.into: dict[str, list[str]] = {}
        for src, dst in store.iter_links():
            self.out.setdefault(src, []).append(dst)
            self.into.setdefault(dst, []).append(src)
        self.n_links = sum(len(v) for v in self.out.values())

    def neighbourhood(self, store, doc_id: str, limit: int = 50) -> pd.DataFrame:
        doc = store.get(doc_id)
        keys = {doc_id} | ({doc.url} if doc is not None and doc.url else set())
        rows = []
        for link in store.outlinks(doc_id)[:limit]:
            rows.append({"direction": "out", "page": link.url, "anchor": link.anchor})
        inbound = sorted({s for k in keys for s in self.into.get(k, [])})[:limit]
        titles = store.get_many(inbound)
        rows += [{"direction": "in", "page": titles[s].url or s if s in titles else s,
                  "anchor": titles[s].title if s in titles else ""} for s in inbound]
        return pd.DataFrame(rows, columns=["direction", "page", "anchor"])


def judged_sets(store_path: Path) -> list[tuple[str, str]]:
    """(dataset, split) pairs that have judgements in the store."""
    with sqlite3.connect(f"file:{store_path}?mode=ro", uri=True) as con:
        return [tuple(r) for r in con.execute("SELECT DISTINCT dataset, split FROM qrels ORDER BY 1, 2")]


def stage_metrics(service: SearchService, dataset: str, split: str, profile: str, max_queries: int = 100,
                  k: int = 10) -> tuple[pd.DataFrame, pd.DataFrame]:
    """nDCG@10 / Recall@100 / MRR@10 after each stage on judged queries, and each stage's latency.

    Returns (metrics: stage x metric, latency: stage x p50/p95 ms). Queries are the first
    `max_queries` judged ones in id order (deterministic).
    """

    qrels = service.store.qrels(dataset, split)
    texts = service.store.queries(dataset)
    qids = sorted(q for q in qrels if q in texts)[:max_queries]
    runs: dict[str, dict[str, dict[str, float]]] = {}
    ms: dict[str, list[float]] = {}
    order: list[str] = []
    total = []
    for q in qids:
        t0 = time.perf_counter()
        cands = service.rank(texts[q], k, profile)
        total.append((time.perf_counter() - t0) * 1000)
        for t in cands.trace:
            if t.stage not in runs:
                order.append(t.stage)
            n = len(t.doc_ids)  # scores by rank: a stage's order is what counts
            runs.setdefault(t.stage, {})[q] = {d: float(n - i) for i, d in enumerate(t.doc_ids)}
            ms.setdefault(t.stage, []).append(t.ms)
    sub = {q: qrels[q] for q in qids}
    metrics = pd.DataFrame([{"stage": s, **evaluate(runs[s], sub, ("nDCG@10", "Recall@100", "MRR@10"))}
                            for s in order])
    lat = pd.DataFrame([{"stage": s, "p50 ms": float(np.percentile(ms[s], 50)),
                         "p95 ms": float(np.percentile(ms[s], 95))} for s in order]
                       + ([{"stage": "total", "p50 ms": float(np.percentile(total, 50)),
                            "p95 ms": float(np.percentile(total, 95))}] if total else []))
    metrics.attrs["queries"] = len(qids)
    return metrics, lat


def result_files() -> dict[str, Path]:
    """Benchmark tables and plots committed under benchmarks/results/ (name -> path)."""
    if not RESULTS_DIR.exists():
        return {}
    return {p.name: p for p in sorted(RESULTS_DIR.iterdir()) if p.suffix in (".md", ".png")}

"""Recall, the funnel's first stage: BM25, dense (dual encoder + vector index) and hybrid candidates.
Feeds the coarse ranker (`funnel.ranking.serving.coarse`) through the one stage shape of `funnel.ranking.serving.stages`.

Every stage here ignores the incoming candidates (recall starts the funnel) and returns up to its
own candidate count, best first, with per-candidate features:
- ``bm25``: the BM25 score of the query for the document;
- ``dense``: the cosine of the query and document embeddings;
hybrid candidates carry both for every candidate (the score a route did not retrieve is computed),
plus ``fused``, the fusion score used for the order.

Fusion (pure functions): `fuse_rrf` (reciprocal rank fusion, rank-based: robust to score scales) and
`fuse_weighted` (each route's scores min-max normalised to [0, 1], then weighted).

Typical use::

    stage = build_recall(config)                    # "auto": hybrid when HOME/index/dense exists
    cands = stage.rank(Request(query="..."), Candidates.empty(), 1000)
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

import numpy as np

from funnel.core.device import resolve_device
from funnel.core.errors import FunnelError, InputError
from funnel.core.judgements import read_qrels, read_queries
from funnel.index.pagerank import load_pagerank, pagerank_prior
from funnel.index.searcher import Bm25Retriever, IndexReader
from funnel.index.vectors import VectorIndex
from funnel.ranking.evaluate import evaluate
from funnel.ranking.models.quantize import check_cpu_dtype, quantize_int8
from funnel.ranking.serving.prf import Rm3
from funnel.ranking.serving.stages import Candidates, Request, StageTrace


ROUTES = ("bm25", "dense", "hybrid")


def fuse_rrf(runs: Sequence[Sequence[str]], k: int = 60, weights: Sequence[float] | None = None
             ) -> tuple[list[str], np.ndarray]:
    """Reciprocal rank fusion: score(d) = sum over runs of w / (k + rank), rank starting at 1.

    runs: ranked doc-id lists, best first. Returns (doc ids, float64 scores), best first; ties keep
    the order of first appearance (earlier run, higher rank).
    """
    if k < 0:
        raise InputError(f"recall.rrf_k must be >= 0, got {k}")
    weights = [1.0] * len(runs) if weights is None else list(weights)
    scores: dict[str, float] = {}
    for run, w in zip(runs, weights):
        for rank, doc_id in enumerate(run, start=1):
            scores[doc_id] = scores.get(doc_id, 0.0) + w / (k + rank)
    ids = list(scores)  # insertion order = first appearance
    vals = np.array([scores[d] for d in ids], dtype=np.float64)
    order = np.argsort(-vals, kind="stable")
    return [ids[i] for i in order], vals[order]


def minmax(scores: np.ndarray) -> np.ndarray:
    """Scale to [0, 1]; a constant run maps to 1 (all equally good)."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.size == 0:
        return scores
    lo, hi = scores.min(), scores.max()
    return np.ones_like(scores) if hi - lo <= 1e-12 else (scores - lo) / (hi - lo)


def fuse_weighted(runs: Sequence[dict[str, float]], weights: Sequence[float]) -> tuple[list[str], np.ndarray]:
    """Weighted sum of min-max normalised scores; a document a run missed gets 0 from it.

    runs: {doc id: score} per route. Returns (doc ids, float64 scores), best first (ties: first appearance).
    """
    if len(runs) != len(weights):
        raise InputError(f"{len(runs)} runs but {len(weights)} weights")
    fused: dict[str, float] = {}
    for run, w in zip(runs, weights):
        ids = list(run)
        for doc_id, s in zip(ids, minmax(np.array([run[d] for d in ids]))):
            fused[doc_id] = fused.get(doc_id, 0.0) + w * float(s)
    ids = list(fused)
    vals = np.array([fused[d] for d in ids], dtype=np.float64)
    order = np.argsort(-vals, kind="stable")
    return [ids[i] for i in order], vals[order]


def _ords(reader, doc_ids: list[str]) -> np.ndarray:
    """Global ordinals in the inverted index (-1 when the document is not in it)."""
    if reader is None:
        return np.full(len(doc_ids), -1, np.int64)
    return np.array([(lambda o: -1 if o is None else o)(reader.ord_of(d)) for d in doc_ids], dtype=np.int64)


class Bm25Recall:
    """BM25 candidates from the inverted index (`funnel.index.searcher.Bm25Retriever`).

    ``prior`` (optional): (n_total,) float64 added to every matched document's BM25 before the top k
    is taken, e.g. `pagerank_prior_array`; ``prf`` (optional): an `funnel.ranking.serving.prf.Rm3`,
    the route then ranks by the RM3-expanded query's BM25 (documents matching only expansion terms
    included). Either way the ``bm25`` feature stays the plain BM25 score of the query.
    """
    name = "bm25"

    def __init__(self, retriever, k: int = 1000, prior: np.ndarray | None = None, prf=None):
        self.retriever = retriever
        self.k = k
        self.prior = prior
        self.prf = prf

    def rank(self, request: Request, candidates: Candidates, k: int | None = None) -> Candidates:
        t0 = time.perf_counter()
        if self.prior is None and self.prf is None:
            hits = self.retriever.search(request.query or "", self.k)
            ords, doc_ids, bm25 = np.asarray(hits.ords, np.int64), list(hits.doc_ids), hits.scores
            scores = bm25
        else:
            if self.prf is None:
                raw = ranked = self.retriever.score(request.query or "")  # (n_total,)
            else:
                raw, ranked, _ = self.prf.score(self.retriever.analyzer(request.query or ""))  # (n_total,) each
            matched = np.flatnonzero(ranked > 0)
            with_prior = ranked[matched] + (self.prior[matched] if self.prior is not None else 0.0)
            order = np.lexsort((matched, -with_prior))[: self.k]  # best first, ties by ordinal
            ords, scores, bm25 = matched[order], with_prior[order], raw[matched[order]]
            doc_ids = self.retriever.reader.doc_id_array[ords].tolist()
        out = Candidates(ords, doc_ids, np.asarray(scores, np.float32),
                         {"bm25": np.asarray(bm25, np.float32)}, list(candidates.trace))
        out.trace.append(StageTrace(self.name, out.doc_ids, out.scores, (time.perf_counter() - t0) * 1e3))
        return out


class DenseRecall:
    """Dense candidates: the query embedded by the dual encoder, nearest documents in the vector index.

    ``encoder``: a `funnel.ranking.models.dual_encoder.DualEncoder` whose document tower made the index;
    ``vectors``: an `funnel.index.vectors.VectorIndex`; ``reader`` (optional): the inverted index's
    `IndexReader`, to fill global ordinals. `embed_query` is public for other stages (e.g. MMR).
    """
    name = "dense"

    def __init__(self, encoder, vectors, k: int = 1000, reader=None):
        self.encoder = encoder
        self.vectors = vectors
        self.k = k
        self.reader = reader

    def embed_query(self, query: str) -> np.ndarray:
        return self.encoder.encode_queries([query])[0]  # (dim,)

    def rank(self, request: Request, candidates: Candidates, k: int | None = None) -> Candidates:
        t0 = time.perf_counter()
        q = self.embed_query(request.query or "")
        scores, rows = self.vectors.search(q[None, :], self.k)
        keep = rows[0] >= 0
        rows, scores = rows[0][keep], scores[0][keep].astype(np.float32)
        doc_ids = [self.vectors.doc_ids[r] for r in rows]
        out = Candidates(_ords(self.reader, doc_ids), doc_ids, scores, {"dense": scores.copy()},
                         list(candidates.trace))
        out.trace.append(StageTrace(self.name, out.doc_ids, out.scores, (time.perf_counter() - t0) * 1e3))
        return out


class HybridRecall:
    """BM25 and dense candidates fused by RRF or normalised weighted scores (`recall.fusion`).

    The result holds up to ``k`` fused candidates (default: all of both routes), each with both
    ``bm25`` and ``dense`` features, and ``fused``.
    """
    name = "hybrid"

    def __init__(self, bm25: Bm25Recall, dense: DenseRecall, *, fusion: str = "rrf", rrf_k: int = 60,
                 dense_weight: float = 0.5, k: int | None = None):
        if fusion not in ("rrf", "weighted"):
            raise InputError(f"recall.fusion must be 'rrf' or 'weighted', got {fusion!r}")
        if not 0.0 <= dense_weight <= 1.0:
            raise InputError(f"recall.dense_weight must be in [0, 1], got {dense_weight}")
        self.bm25, self.dense = bm25, dense
        self.fusion, self.rrf_k, self.dense_weight, self.k = fusion, rrf_k, dense_weight, k

    def rank(self, request: Request, candidates: Candidates, k: int | None = None) -> Candidates:
        t0 = time.perf_counter()
        query = request.query or ""
        b = self.bm25.rank(request, Candidates.empty(), k)
        q = self.dense.embed_query(query)
        scores, rows = self.dense.vectors.search(q[None, :], self.dense.k)
        keep = rows[0] >= 0
        d_ids = [self.dense.vectors.doc_ids[r] for r in rows[0][keep]]
        d_scores = scores[0][keep]
        w = self.dense_weight
        if self.fusion == "rrf":
            ids, fused = fuse_rrf([b.doc_ids, d_ids], self.rrf_k, [2 * (1 - w), 2 * w])  # w = 0.5: plain RRF
        else:
            ids, fused = fuse_weighted([dict(zip(b.doc_ids, b.scores.tolist())), dict(zip(d_ids, d_scores.tolist()))],
                                       [1 - w, w])
        if self.k:
            ids, fused = ids[: self.k], fused[: self.k]
        # complete both features for every candidate: the score the other route did not return
        bm25_of = dict(zip(b.doc_ids, b.features["bm25"].tolist()))  # plain BM25 (not the prior's or PRF's score)
        missing_bm25 = [d for d in ids if d not in bm25_of]
        if missing_bm25:
            full = self.bm25.retriever.score(query)  # (n_total,) accumulator over the index
            reader = self.bm25.retriever.reader
            for d in missing_bm25:
                o = reader.ord_of(d)
                bm25_of[d] = float(full[o]) if o is not None else 0.0
        dense_of = dict(zip(d_ids, d_scores.tolist()))
        missing_dense = [d for d in ids if d not in dense_of]
        if missing_dense:
            vecs, found = self.dense.vectors.lookup(missing_dense)  # (m, dim)
            sims = vecs @ q
            for d, s, f in zip(missing_dense, sims, found):
                dense_of[d] = float(s) if f else 0.0
        reader = self.bm25.retriever.reader
        out = Candidates(_ords(reader, ids), ids, fused.astype(np.float32),
                         {"bm25": np.array([bm25_of[d] for d in ids], np.float32),
                          "dense": np.array([dense_of[d] for d in ids], np.float32),
                          "fused": fused.astype(np.float32)}, list(candidates.trace))
        out.trace.append(StageTrace(self.name, out.doc_ids, out.scores, (time.perf_counter() - t0) * 1e3))
        return out


def open_dense(config, model: str | None = None):
    """(DualEncoder, VectorIndex) for HOME's vector index, checking the encoder matches the index."""
    # here, not at the top: the encoder module imports torch, which a BM25-only server never needs
    from funnel.ranking.models.dual_encoder import load_dual_encoder, resolve_model_path, tower_fingerprint

    rc = config.recall

    dev, _ = resolve_device(config.dense.device)
    vectors = VectorIndex(config.paths.dense_index, backend=rc.ann, device=str(dev), nlist=rc.nlist,
                          nprobe=rc.nprobe, hnsw_m=rc.hnsw_m, ef_search=rc.ef_search)
    name = model or resolve_model_path(config)
    encoder = load_dual_encoder(name, config.dense.device)
    doc_tower = encoder.doc_tower if encoder.doc_tower is not None else encoder.query_tower
    if vectors.meta.get("doc_hash") and vectors.meta["doc_hash"] != tower_fingerprint(doc_tower):
        raise FunnelError(f"vector index {vectors.dir} was built by {vectors.meta.get('model')!r}, whose document "
                          f"encoder differs from {name!r}: run `funnel embed --rebuild` or pass that model")
    if "query_max_len" in vectors.meta and str(name) in ("minilm", "tiny"):
        encoder.query_max_len = int(vectors.meta["query_max_len"])
    if dev.type == "cpu" and check_cpu_dtype(config.dense.cpu_dtype) == "int8":
        # queries only: the index's document vectors stay those of the fp32 document tower
        encoder.doc_tower = doc_tower
        encoder.query_tower = quantize_int8(encoder.query_tower)
    return encoder, vectors


def resolve_route(config, route: str | None = None) -> str:
    """`route` (default ``pipeline.recall``) with ``auto`` resolved: hybrid when HOME holds a dense
    vector index, else BM25."""
    route = route or config.pipeline.recall
    if route == "auto":
        route = "hybrid" if (config.paths.dense_index / "manifest.json").exists() else "bm25"
    if route not in ROUTES:
        raise InputError(f"recall route (pipeline.recall) must be auto or one of {', '.join(ROUTES)}, got {route!r}")
    return route


def build_recall(config, route: str | None = None, *, model: str | None = None, retriever=None,
                 resources: dict | None = None, k: int | None = None):
    """The recall stage for `route` ("bm25", "dense", "hybrid", "auto"; default ``pipeline.recall``):
    the one constructor that serving (`Pipeline`), coarse training and `funnel eval-recall` share, so a
    setting such as ``recall.pagerank_prior`` means the same everywhere.

    ``retriever``: an open `Bm25Retriever` to share (else one is opened on HOME's index);
    ``k``: candidates kept (the pipeline's ``pipeline.recall_k``; each route then returns at most
    ``min(recall.*_k, k)``); ``resources``: a dict that receives ``embed`` (doc ids -> (n, dim) unit
    vectors, zeros when absent) when a dense route is built, for the re-ranker's MMR and dedup.
    """
    route = resolve_route(config, route)
    rc = config.recall

    def cap(n: int) -> int:
        return min(n, k) if k else n

    bm25 = None
    if route != "dense":
        retriever = retriever or Bm25Retriever.open(config.paths.index, config.bm25)
        prior = pagerank_prior_array(config.paths.home, retriever.reader.doc_ids, rc.pagerank_prior)
        prf = Rm3(retriever, rc.prf_docs, rc.prf_terms, rc.prf_weight) if rc.prf else None
        bm25 = Bm25Recall(retriever, cap(rc.bm25_k), prior, prf)
    if route == "bm25":
        return bm25
    encoder, vectors = open_dense(config, model)
    if resources is not None:
        resources["embed"] = lambda ids: vectors.lookup(ids)[0]  # (n, dim) normalised; zeros when absent
    reader = retriever.reader if retriever is not None else _maybe_reader(config.paths.index)
    dense = DenseRecall(encoder, vectors, cap(rc.dense_k), reader)
    if route == "dense":
        return dense
    return HybridRecall(bm25, dense, fusion=rc.fusion, rrf_k=rc.rrf_k, dense_weight=rc.dense_weight, k=k)


def pagerank_prior_array(home, doc_ids: Sequence[str], weight: float) -> np.ndarray | None:
    """(len(doc_ids),) ``weight x log(PageRank x N)`` per document (0 for a page outside the link
    graph), or None when the weight is 0 or no PageRank has been computed (`funnel pipeline pagerank`)."""

    if not weight:
        return None
    pr = load_pagerank(home)
    if not pr:
        return None
    aligned = np.fromiter((pr.get(d, 0.0) for d in doc_ids), dtype=np.float64, count=len(doc_ids))
    return pagerank_prior(np.zeros(len(doc_ids)), aligned, weight, len(pr))


def _maybe_reader(index_dir: Path):

    try:
        return IndexReader(index_dir)
    except FunnelError:
        return None


def evaluate_recall(config, data_dir, split: str, routes: Sequence[str], k: int = 1000,
                    progress: bool = True) -> list[dict]:
    """One row per route: nDCG@10, Recall@100, Recall@1000 and mean ms/query on a split's judgements."""
    from dataclasses import replace

    from tqdm.auto import tqdm

    qrels = read_qrels(Path(data_dir), split)
    queries = read_queries(Path(data_dir))
    qids = sorted(q for q in qrels if q in queries)
    if not qids:
        raise InputError(f"{data_dir}/qrels/{split}.tsv: no judged query found in queries.jsonl")
    config = replace(config, recall=replace(config.recall, bm25_k=k, dense_k=k))
    rows = []
    for route in routes:
        stage = build_recall(config, route)
        run, t0 = {}, time.perf_counter()
        for qid in tqdm(qids, desc=route, disable=not progress):
            c = stage.rank(Request(query=queries[qid]), Candidates.empty(), k)
            run[qid] = dict(zip(c.doc_ids[:k], c.scores[:k].astype(float).tolist()))
        ms = (time.perf_counter() - t0) * 1e3 / len(qids)
        rows.append({"route": route, "queries": len(qids), **evaluate(run, {q: qrels[q] for q in qids}),
                     "ms/query": ms})
    return rows

"""The ranking funnel: recall -> coarse -> fine -> rerank, a loop over stages of one shape
(`rank(request, candidates, k) -> candidates`). Built from `funnel.core.config.PipelineConfig`; feeds the
CLI (`funnel search`, `funnel eval --profile`), the API and the dashboard.

Profiles set the expensive stage's depth and device: ``cpu`` cross-encodes the top
``pipeline.cpu_fine_k`` candidates in fp32 on the CPU (sized for p95 <= 300 ms on 2 cores);
``gpu`` cross-encodes the top ``pipeline.gpu_fine_k`` in bf16/fp16 on CUDA (CPU fallback with a
warning). A stage whose model has not been trained is skipped with a log line, so a fresh index
already answers with BM25 and each `funnel train ...` adds its stage.

Every stage appends a `StageTrace` (its ranked ids, scores, milliseconds) to the candidates;
`explain` turns the traces into per-result rank and score at each stage.
"""
from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from funnel.core.config import Config
from funnel.core.errors import FunnelError
from funnel.core.store import DocumentStore
from funnel.index.pagerank import load_pagerank
from funnel.index.remote import RemoteShardedRetriever
from funnel.index.searcher import Bm25Retriever
from funnel.ranking.evaluate import evaluate
from funnel.ranking.serving.batching import enable_batching
from funnel.ranking.serving.coarse import CoarseModel, CoarseRanker
from funnel.ranking.serving.features import DocCache, FeatureContext
from funnel.ranking.serving.fine import CrossEncoderReranker, fusion_choice
from funnel.ranking.serving.recall import build_recall
from funnel.ranking.serving.rerank import Reranker
from funnel.ranking.serving.stages import Candidates, Request, run_stages


log = logging.getLogger(__name__)

PROFILES = ("cpu", "gpu")
STAGE_NAMES = ("recall", "coarse", "fine", "rerank")  # recall traces under its route: bm25, dense, hybrid


@dataclass
class Pipeline:
    """Stages with their output sizes; `run` passes a request through all of them."""
    stages: list[tuple[object, int]]  # (stage, k it keeps)
    profile: str = "cpu"
    resources: dict = field(default_factory=dict)  # what from_config opened (retriever, docs, store, ...)
    batchers: list = field(default_factory=list)  # micro-batched model wrappers (`funnel.ranking.serving.batching`)
    gate: object = None  # a batching.CpuGate: how many requests run their Python parts at once (None: no limit)

    def __post_init__(self):
        self._running = 0  # requests inside `run` now (threads share a pipeline): what a batcher waits for
        self._running_lock = threading.Lock()

    @property
    def stage_names(self) -> list[str]:
        return [s.name for s, _ in self.stages]

    def running(self) -> int:
        return self._running

    def run(self, request: Request) -> Candidates:
        with self._running_lock:
            self._running += 1
        try:
            with self.gate.hold() if self.gate is not None else contextlib.nullcontext():
                return run_stages(self.stages, request)  # the loop search and recommendation share
        finally:
            with self._running_lock:
                self._running -= 1

    def search(self, query: str, k: int = 10, **kwargs) -> Candidates:
        return self.run(Request(query=query, k=k, profile=self.profile, **kwargs))

    def close(self) -> None:
        for batcher in self.batchers:
            batcher.close()
        store = self.resources.get("store")
        if store is not None:
            store.close()
        close = getattr(self.resources.get("retriever"), "close", None)  # a front's HTTP client and threads
        if close is not None:
            close()

    @classmethod
    def from_config(cls, config: Config, profile: str = "cpu", *, stages: list[str] | None = None,
                    device: str | None = None) -> "Pipeline":
        """Open the index, store and trained models under ``config.paths.home`` for `profile`."""

        if profile not in PROFILES:
            raise FunnelError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
        pc = config.pipeline
        wanted = stages if stages is not None else [s.strip() for s in pc.stages.split(",") if s.strip()]
        bad = [s for s in wanted if s not in STAGE_NAMES]
        if bad:
            raise FunnelError(f"pipeline.stages: unknown stage(s) {bad}; known: {', '.join(STAGE_NAMES)}")
        sc = config.serve
        retriever = (RemoteShardedRetriever.open(config.paths.index, sc.shard_urls, config.bm25, sc.shard_timeout_s)
                     if sc.shard_urls else Bm25Retriever.open(config.paths.index, config.bm25))  # a front: shard servers
        store = DocumentStore(config.paths.store, readonly=True)
        docs = DocCache(store, retriever.analyzer)
        res = {"retriever": retriever, "store": store, "docs": docs}
        plan: list[tuple[object, int]] = [(build_recall(config, retriever=retriever, resources=res, k=pc.recall_k), pc.recall_k)]
        if "coarse" in wanted:
            if (config.paths.coarse_model / "model.txt").exists():

                ctx = FeatureContext(retriever, docs, load_pagerank(config.paths.home))
                plan.append((CoarseRanker(CoarseModel.load(config.paths.coarse_model), ctx), pc.coarse_k))
            else:
                log.info("no coarse model in %s: coarse stage skipped (`funnel train coarse`)", config.paths.coarse_model)
        fuse, cpu_fine = fusion_choice(config)
        if "fine" in wanted and profile == "cpu" and not cpu_fine:
            log.info("fine stage left out of the cpu profile: on held-out training queries it did not beat the "
                     "coarse ranker (%s; set pipeline.fine_weight to run it)", config.paths.fusion)
        elif "fine" in wanted:
            fine_dir = Path(config.fine.model) if config.fine.model else config.paths.cross_encoder
            if (fine_dir / "config.json").exists():
                from funnel.ranking.models.cross_encoder import load_cross_encoder  # torch: only when a model is served

                gpu = profile == "gpu"
                encoder = load_cross_encoder(fine_dir, device or ("auto" if gpu else "cpu"),
                                             dtype=config.fine.dtype, cpu_dtype=config.fine.cpu_dtype,
                                             max_length=pc.gpu_fine_max_length if gpu else pc.cpu_fine_max_length)
                depth = pc.gpu_fine_k if gpu else pc.cpu_fine_k
                fuse = fuse if len(plan) > 1 else 0.0  # the coarse score is what gets fused
                # on a GPU one batch of every candidate: per-batch kernel launches cost more than padding
                batch = max(config.fine.batch_size, depth) if encoder.device.type == "cuda" else config.fine.batch_size
                plan.append((CrossEncoderReranker(encoder, docs.texts, depth=depth,
                                                  batch_size=batch, fuse_weight=fuse),
                             max(depth, pc.final_k)))  # below `depth`: passed through in coarse order
            else:
                log.info("no cross-encoder in %s: fine stage skipped (`funnel train cross-encoder`)", fine_dir)
        if "rerank" in wanted:

            plan.append((Reranker(config.rerank, docs, embed=res.get("embed"),
                                  lookup_ord=retriever.reader.ord_of), pc.final_k))
        pipeline = cls(plan, profile, res)
        # concurrent requests (the server's threads) share one forward pass per model; a lone caller never waits
        pipeline.batchers = enable_batching(pipeline, pc.batch_wait_ms, batch_size=config.fine.batch_size,
                                            cpu_slots=pc.cpu_slots)
        return pipeline


def explain(result: Candidates) -> list[dict]:
    """Per final result: its rank (1-based, None when it was not in that stage's list) and score at each stage."""
    stage_pos = [(t.stage, {d: i for i, d in enumerate(t.doc_ids)}, t.scores) for t in result.trace]
    rows = []
    for rank, doc_id in enumerate(result.doc_ids, 1):
        stages = {}
        for name, pos, scores in stage_pos:
            i = pos.get(doc_id)
            stages[name] = {"rank": None if i is None else i + 1,
                            "score": None if i is None else round(float(scores[i]), 4)}
        rows.append({"rank": rank, "doc_id": doc_id, "stages": stages})
    return rows


def timings(result: Candidates) -> dict[str, float]:
    """Milliseconds per stage of one run."""
    return {t.stage: t.ms for t in result.trace}



def cascade_runs(result: Candidates) -> dict[str, list[str]]:
    """Per stage, the ranked list the funnel would return if it stopped after that stage: the
    stage's own list followed by the earlier stages' remaining candidates in their order (so a
    stage that keeps 20 documents is still judged on Recall@100 fairly)."""
    runs: dict[str, list[str]] = {}
    prev: list[str] = []
    for t in result.trace:
        seen = set(t.doc_ids)
        cur = list(t.doc_ids) + [d for d in prev if d not in seen]
        runs[t.stage] = cur
        prev = cur
    return runs


def evaluate_pipeline(pipeline: Pipeline, queries: dict[str, str], qrels: dict[str, dict[str, int]], *,
                      k: int = 100, progress: bool = True, warmup: int = 3) -> dict:
    """nDCG@10 / Recall@100 after each stage (see `cascade_runs`) and p50/p95 milliseconds per stage.

    Returns ``{"stages": [{"stage", "nDCG@10", "Recall@100", "p50_ms", "p95_ms"}, ...], "total": {...},
    "queries": n, "runs": {stage: run}}``. The first `warmup` queries are run once untimed (model
    and cache warm-up) before the timed pass.
    """
    from tqdm.auto import tqdm

    qids = sorted(q for q in qrels if q in queries)
    for qid in qids[:warmup]:
        pipeline.search(queries[qid], k)
    runs: dict[str, dict] = {}
    ms: dict[str, list[float]] = {}
    totals = []
    for qid in tqdm(qids, desc=f"eval ({pipeline.profile})", disable=not progress):
        t0 = time.perf_counter()
        result = pipeline.search(queries[qid], k)
        totals.append((time.perf_counter() - t0) * 1000)
        for stage, ids in cascade_runs(result).items():
            runs.setdefault(stage, {})[qid] = {d: float(len(ids) - i) for i, d in enumerate(ids[:k])}
        for stage, t in timings(result).items():
            ms.setdefault(stage, []).append(t)
    rows = []
    for stage, run in runs.items():
        m = evaluate(run, qrels, ("nDCG@10", "Recall@100"))
        rows.append({"stage": stage, **m, "p50_ms": float(np.percentile(ms[stage], 50)),
                     "p95_ms": float(np.percentile(ms[stage], 95))})
    total = {"p50_ms": float(np.percentile(totals, 50)) if totals else 0.0,
             "p95_ms": float(np.percentile(totals, 95)) if totals else 0.0}
    return {"stages": rows, "total": total, "queries": len(qids), "runs": runs}

"""Serving core: the index, store and ranking models loaded once and shared by every request.

Feeds the HTTP API (`api.app`) and the dashboard. `SearchService.open(config)` loads everything
up front, so the first request is as fast as the rest and a missing artifact fails at start-up
with a message instead of on a user's query.

Thread safety: FastAPI runs each request in a worker thread. The BM25 index is read-only
(memory-mapped arrays, a fresh score accumulator per query); the document store gives each
thread its own SQLite connection; the analyzer's Snowball stemmer is not safe to share between
threads, so each thread gets its own analyzer. The ranking pipeline (when present) is guarded by
a lock unless it declares itself thread-safe (``Pipeline.thread_safe = True``).
"""
from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from funnel.config import Config
from funnel.errors import FunnelError
from funnel.store import Document, DocumentStore
from index.analyze import Analyzer
from index.searcher import Bm25Retriever
from ranking.stages import Candidates, Request, StageTrace

log = logging.getLogger(__name__)

SNIPPET_CHARS = 240


@dataclass
class Hit:
    rank: int
    doc_id: str
    score: float
    title: str
    url: str | None
    snippet: str


@dataclass
class StageRow:
    rank: int
    doc_id: str
    score: float
    prev_rank: int | None  # rank in the previous stage (None: first stage, or not in the previous stage)


@dataclass
class StageTable:
    stage: str
    ms: float
    n_candidates: int
    rows: list[StageRow]


@dataclass
class SearchResult:
    query: str
    k: int
    profile: str
    took_ms: float
    hits: list[Hit]
    stages: list[StageTable] = field(default_factory=list)
    features: dict[str, list[float]] = field(default_factory=dict)  # name -> value per hit (aligned with hits)
    candidates: Candidates | None = None  # the raw final candidates, for in-process callers (dashboard)


def snippet(text: str, query: str, width: int = SNIPPET_CHARS) -> str:
    """A window of `text` around the first query word it contains (case-insensitive), else its start."""
    text = " ".join(text.split())
    if len(text) <= width:
        return text
    pos = -1
    for word in sorted(re.findall(r"\w{3,}", query), key=len, reverse=True):
        pos = text.lower().find(word.lower())
        if pos >= 0:
            break
    start = max(0, pos - width // 4) if pos >= 0 else 0
    start = min(start, len(text) - width)
    if start > 0:  # do not cut a word in half
        space = text.find(" ", start)
        start = space + 1 if 0 <= space < start + 20 else start
    out = text[start:start + width].rstrip()
    return ("… " if start > 0 else "") + out + (" …" if start + width < len(text) else "")


def stage_tables(trace: list[StageTrace], depth: int) -> list[StageTable]:
    """Each stage's top `depth` with the rank each document had in the stage before (rank movement)."""
    tables = []
    prev: dict[str, int] | None = None
    for t in trace:
        ranks = {d: i + 1 for i, d in enumerate(t.doc_ids)}
        scores = np.asarray(t.scores, dtype=np.float64)
        rows = [StageRow(i + 1, d, float(scores[i]), prev.get(d) if prev is not None else None)
                for i, d in enumerate(t.doc_ids[:depth])]
        tables.append(StageTable(t.stage, float(t.ms), len(t.doc_ids), rows))
        prev = ranks
    return tables


def _load_pipeline(config: Config):
    """The ranking funnel (ranking/pipeline.py) if this build has it, else None (BM25-only serving)."""
    import importlib
    import importlib.util

    if importlib.util.find_spec("ranking.pipeline") is None:
        return None
    return importlib.import_module("ranking.pipeline").Pipeline.open(config)


class SearchService:
    """Everything a query needs, loaded once. Safe to call from many threads."""

    def __init__(self, config: Config, retriever: Bm25Retriever, store: DocumentStore, pipeline=None):
        self.config = config
        self.retriever = retriever
        self.store = store
        self.pipeline = pipeline
        self._pipeline_lock = threading.Lock()
        self._local = threading.local()
        self._analyzer_config = retriever.analyzer.config
        if pipeline is not None:
            self.profiles: tuple[str, ...] = tuple(pipeline.profiles)
        else:
            self.profiles = ("cpu",)  # BM25 only: one profile, served on the CPU
        self.default_profile = (config.serve.default_profile if config.serve.default_profile in self.profiles
                                else self.profiles[0])
        self.loaded_at = time.time()

    @classmethod
    def open(cls, config: Config, use_pipeline: bool = True) -> "SearchService":
        t0 = time.perf_counter()
        retriever = Bm25Retriever.open(config.paths.index, config.bm25)
        store = DocumentStore(config.paths.store, readonly=True)
        pipeline = _load_pipeline(config) if use_pipeline else None
        service = cls(config, retriever, store, pipeline)
        service.search("warm up 预热", k=1)  # loads the stemmer, jieba's dictionary and the models now
        log.info("search service ready: %d docs, profiles %s, %.1fs", service.n_docs, service.profiles,
                 time.perf_counter() - t0)
        return service

    @property
    def n_docs(self) -> int:
        return self.retriever.reader.n_docs

    def _analyzer(self) -> Analyzer:
        analyzer = getattr(self._local, "analyzer", None)
        if analyzer is None:
            analyzer = self._local.analyzer = Analyzer(self._analyzer_config)
        return analyzer

    # -- queries ---------------------------------------------------------
    def _bm25(self, query: str, k: int) -> Candidates:
        t0 = time.perf_counter()
        hits = self.retriever.search_terms(self._analyzer()(query), k)
        ms = (time.perf_counter() - t0) * 1000
        scores = np.asarray(hits.scores, np.float32)
        return Candidates(np.asarray(hits.ords, np.int64), list(hits.doc_ids), scores,
                          {"bm25": scores.copy()}, [StageTrace("bm25", list(hits.doc_ids), scores, ms)])

    def rank(self, query: str, k: int, profile: str) -> Candidates:
        """Final candidates (best first) with their per-stage trace."""
        if profile not in self.profiles:
            raise FunnelError(f"unknown profile {profile!r}; this server offers: {', '.join(self.profiles)}")
        if self.pipeline is None:
            return self._bm25(query, k)
        request = Request(query=query, k=k, profile=profile)
        if getattr(self.pipeline, "thread_safe", False):
            return self.pipeline.run(request)
        with self._pipeline_lock:
            return self.pipeline.run(request)

    def search(self, query: str, k: int = 10, profile: str | None = None, explain: bool = False,
               explain_depth: int | None = None) -> SearchResult:
        profile = profile or self.default_profile
        t0 = time.perf_counter()
        cands = self.rank(query, k, profile)
        n = min(k, len(cands))
        ids = cands.doc_ids[:n]
        docs = self.store.get_many(ids)
        hits = []
        for i, doc_id in enumerate(ids):
            doc = docs.get(doc_id)
            hits.append(Hit(i + 1, doc_id, float(cands.scores[i]), doc.title if doc else "",
                            doc.url if doc else None, snippet(doc.text, query) if doc else ""))
        took = (time.perf_counter() - t0) * 1000
        result = SearchResult(query, k, profile, took, hits, candidates=cands)
        if explain:
            result.stages = stage_tables(cands.trace, explain_depth or k)
            result.features = {name: [float(v) for v in np.asarray(vals)[:n]]
                               for name, vals in cands.features.items()}
        return result

    # -- documents -------------------------------------------------------
    def document(self, doc_id: str) -> Document | None:
        return self.store.get(doc_id)

    def close(self) -> None:
        self.store.close()


def index_generation(index_dir: str | Path) -> int | None:
    from index.builder import read_manifest

    manifest = read_manifest(Path(index_dir))
    return None if manifest is None else int(manifest["generation"])

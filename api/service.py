"""Serving core: the index, store and ranking funnel loaded once and shared by every request.

Feeds the HTTP API (`funnel.api.app`) and the dashboard. `SearchService.open(config)` loads everything up
front, so the first request is as fast as the rest and a missing artifact fails at start-up with a
message instead of on a user's query.

Ranking: one `funnel.ranking.serving.pipeline.Pipeline` per offered profile (``cpu`` always, ``gpu`` when CUDA is
present). Each pipeline skips the stages whose models are not trained yet, so a freshly indexed home
already serves BM25; ``--bm25-only`` serves the same pipeline cut to BM25 recall.

Thread safety: FastAPI runs each request in a worker thread, and requests share the pipelines. What a
query touches is safe to share: the index is read-only (memory-mapped arrays, a fresh accumulator per
query, a term cache of atomic dict writes); the store gives each thread its own SQLite connection;
the vector index's FAISS search takes its parameters per call; LightGBM's predict is thread-safe; torch
modules in eval mode under ``inference_mode`` may run in several threads at once. The few shared
mutable pieces carry their own small locks: the analyzer's Snowball stemmer (a new word), the
documents' LRU cache, and the fast tokenizers (`funnel.ranking.models.backbone.TOKENIZER_LOCK`).
Concurrent requests' cross-encoder pairs and query encodings are micro-batched into one forward pass
(`funnel.ranking.serving.batching`, ``pipeline.batch_wait_ms``). A pipeline is held shared by every
running request; `exclusive` takes it alone (the dashboard swapping a model's attention kernel).
``serve.pipeline_lock = true`` brings back the old server, one request at a time per pipeline.

A newly published index is served without a restart: at most every ``serve.reload_check_s`` seconds a
request stats ``index/manifest.json`` and the vector index's ``index/dense/manifest.json`` (two system
calls); when one changed and names another generation, a background thread opens a fresh `_Loaded` (index, store, pipelines), warms it and swaps
it in under a lock. A request holds the `_Loaded` it started with until it ends, so it never mixes two
indexes; the old one is closed (its memory maps dropped) when the last request using it ends. A new
index that cannot be opened (a publish caught half-way) is logged and the old one kept serving.
`index_generation()` is the generation being served, not the one on disk.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from funnel.core.config import Config
from funnel.core.errors import FunnelError, InputError
from funnel.core.store import Document, DocumentStore
from funnel.index.searcher import Bm25Retriever, ShardedBm25Retriever
from funnel.ranking.serving.pipeline import Pipeline
from funnel.ranking.serving.recall import Bm25Recall
from funnel.ranking.serving.rerank import Reranker
from funnel.ranking.serving.stages import Candidates, Request, StageTrace


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
    return snippet_of(collapse_spaces(text), query_words(query), width)


def collapse_spaces(text: str) -> str:
    """Every run of whitespace as one space, none at the ends: the text a snippet is cut from."""
    return " ".join(text.split())


def query_words(query: str) -> list[str]:
    """The query's words of 3 or more characters, longest first, lower-cased: what `snippet` looks for."""
    return [w.lower() for w in sorted(re.findall(r"\w{3,}", query), key=len, reverse=True)]


def snippet_of(text: str, words: list[str], width: int = SNIPPET_CHARS) -> str:
    """`snippet` of an already collapsed text (`collapse_spaces`) for `query_words`: a search computes the
    words once for its ten hits, and takes each text collapsed from `HitDocs`."""
    if len(text) <= width:
        return text
    pos = -1
    low = text.lower()  # once per hit, not once per query word
    for word in words:
        pos = low.find(word)
        if pos >= 0:
            break
    start = max(0, pos - width // 4) if pos >= 0 else 0
    start = min(start, len(text) - width)
    if start > 0:  # do not cut a word in half
        space = text.find(" ", start)
        start = space + 1 if 0 <= space < start + 20 else start
    out = text[start:start + width].rstrip()
    return ("… " if start > 0 else "") + out + (" …" if start + width < len(text) else "")


class HitDocs:
    """What a hit shows of a document, (title, URL, text with collapsed spaces), kept by doc id for one
    index generation (one `_Loaded`): reading ten rows from SQLite and collapsing their texts on every
    search cost more CPU than the BM25 search itself. A document the store no longer holds is None.

    Bounded by the characters held (``max_chars``): past it the cache is emptied and refills from the
    store (the same policy as the retriever's term cache). Safe to share between request threads: a
    lookup is one dict read; filling is under a lock.
    """

    def __init__(self, store: DocumentStore, max_chars: int = 32_000_000):
        self.store = store
        self.max_chars = max_chars
        self._docs: dict[str, tuple[str, str | None, str] | None] = {}
        self._chars = 0
        self._lock = threading.Lock()

    def get(self, doc_ids: list[str]) -> list[tuple[str, str | None, str] | None]:
        docs = self._docs
        missing = [d for d in doc_ids if d not in docs]
        if missing:
            rows = self.store.get_many(missing)
            fresh = {}
            for d in missing:
                doc = rows.get(d)
                fresh[d] = None if doc is None else (doc.title, doc.url, collapse_spaces(doc.text))
            with self._lock:
                added = sum(len(v[2]) + len(v[0] or "") for v in fresh.values() if v is not None)
                if self._chars + added > self.max_chars:
                    self._docs, self._chars = {}, 0
                self._docs.update(fresh)
                self._chars += added
            return [fresh[d] if d in fresh else docs.get(d) for d in doc_ids]
        return [docs[d] for d in doc_ids]


def stage_tables(trace: list[StageTrace], depth: int) -> list[StageTable]:
    """Each stage's top `depth` with the rank each document had in the stage before (rank movement)."""
    tables = []
    prev: dict[str, int] | None = None
    for t in trace:
        scores = np.asarray(t.scores, dtype=np.float64)
        rows = [StageRow(i + 1, d, float(scores[i]), prev.get(d) if prev is not None else None)
                for i, d in enumerate(t.doc_ids[:depth])]
        tables.append(StageTable(t.stage, float(t.ms), len(t.doc_ids), rows))
        prev = {d: i + 1 for i, d in enumerate(t.doc_ids)}
    return tables


def cuda_available() -> bool:
    """Whether torch sees a CUDA (or ROCm) device. Without a GPU device node torch is not imported: it
    costs seconds of start-up that a server without a torch model (BM25 alone) never needs."""
    if "torch" not in sys.modules and not any(Path(p).exists() for p in ("/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd")):
        return False
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def offered_profiles(config: Config) -> tuple[str, ...]:
    """``cpu`` always; ``gpu`` only on a machine with CUDA (asking for it elsewhere is a 422, not a slow CPU run)."""
    return ("cpu", "gpu") if cuda_available() else ("cpu",)


def open_pipeline(config: Config, profile: str, use_funnel: bool = True):
    """The ranking funnel for `profile`; with ``use_funnel=False``, BM25 recall alone (trained models ignored)."""

    if use_funnel:
        return Pipeline.from_config(config, profile)
    bm25 = replace(config, pipeline=replace(config.pipeline, recall="bm25"))
    return Pipeline.from_config(bm25, profile, stages=["recall"])


def quick_pipeline(pipeline) -> bool:
    """Whether every stage of `pipeline` is a short burst of CPU in this process: BM25 recall over an index
    opened here (not shard servers over HTTP: a subclass of the in-process retrievers does not count) and
    re-ranking without a dense model. The API runs such a request on its event loop: handing it to a
    worker thread (a queue, a wake-up, the GIL fought over with the loop) cost more CPU than the search.
    A model stage or a network call runs in a thread, so the loop keeps serving meanwhile."""
    for stage, _ in pipeline.stages:
        if isinstance(stage, Bm25Recall):
            if type(stage.retriever) not in (Bm25Retriever, ShardedBm25Retriever):
                return False
        elif not (isinstance(stage, Reranker) and stage.embed is None):
            return False
    return True


WARM_QUERY = "warm up 预热"


def _manifest_stamp(index_dir: Path, dense_dir: Path | None = None) -> tuple | None:
    """What changes when a new manifest of the inverted index, or of the vector index beside it, is
    published (each is replaced, so a new inode); None without an inverted index."""
    stamps = []
    for folder in (index_dir, dense_dir):
        try:
            st = os.stat(Path(folder) / "manifest.json") if folder is not None else None
        except OSError:
            st = None
        stamps.append((st.st_ino, st.st_mtime_ns, st.st_size) if st is not None else None)
    return None if stamps[0] is None else tuple(stamps)


def _dense_generation(pipelines: dict[str, object]) -> int | None:
    """The vector index generation a pipeline's recall stage serves (None: no dense route)."""
    for pipeline in pipelines.values():
        recall = pipeline.stages[0][0] if pipeline.stages else None
        vectors = getattr(recall, "vectors", None) or getattr(getattr(recall, "dense", None), "vectors", None)
        if vectors is not None:
            return vectors.manifest.get("generation")
    return None


class SharedLock:
    """Held by many at once (`shared`) or by one alone (`exclusive`); a waiting exclusive holder stops
    new shared ones from entering, so it is not starved by a stream of requests."""

    def __init__(self):
        self._cond = threading.Condition()
        self._shared = 0
        self._exclusive = False
        self._waiting = 0  # exclusive holders waiting

    @contextlib.contextmanager
    def shared(self):
        with self._cond:
            self._cond.wait_for(lambda: not self._exclusive and not self._waiting)
            self._shared += 1
        try:
            yield
        finally:
            with self._cond:
                self._shared -= 1
                if not self._shared:
                    self._cond.notify_all()

    @contextlib.contextmanager
    def exclusive(self):
        with self._cond:
            self._waiting += 1
            self._cond.wait_for(lambda: not self._exclusive and not self._shared)
            self._waiting -= 1
            self._exclusive = True
        try:
            yield
        finally:
            with self._cond:
                self._exclusive = False
                self._cond.notify_all()


class _Loaded:
    """One generation of the index with its store and pipelines, and the requests using it."""

    def __init__(self, pipelines: dict[str, object]):
        self.pipelines = pipelines
        self.locks = {p: SharedLock() for p in pipelines}
        first = next(iter(pipelines.values()))
        self.retriever = first.resources["retriever"]
        self.store: DocumentStore = first.resources["store"]
        self.hit_docs = HitDocs(self.store)
        self.generation: int | None = self.retriever.reader.manifest.get("generation")
        self.dense_generation: int | None = _dense_generation(pipelines)
        self.quick = {p: quick_pipeline(pipeline) for p, pipeline in pipelines.items()}
        self.users = 0  # requests running on it (guarded by the service's swap lock)
        self.retired = False  # replaced by a newer generation: close when the last user ends
        self.closed = False

    def warm(self) -> None:
        """Load the stemmer, jieba's dictionary and lazy model parts now, not on a user's query."""
        for profile, pipeline in self.pipelines.items():
            with self.locks[profile].shared():
                pipeline.run(Request(query=WARM_QUERY, k=1, profile=profile))

    def close(self) -> None:
        self.closed = True
        for p in self.pipelines.values():
            close = getattr(p, "close", None)
            if close is not None:
                close()


class SearchService:
    """Everything a query needs, loaded once (and again for each newly published index). Safe to call
    from many threads."""

    def __init__(self, config: Config, pipelines: dict[str, object], *, use_funnel: bool = True):
        if not pipelines:
            raise FunnelError("no ranking profile could be loaded")
        self.config = config
        self.use_funnel = use_funnel
        self.profiles: tuple[str, ...] = tuple(pipelines)
        self.default_profile = (config.serve.default_profile if config.serve.default_profile in self.profiles
                                else self.profiles[0])
        self.loaded_at = time.time()
        self._swap = threading.Lock()  # guards _loaded, users counts and the reload state
        self._loaded = _Loaded(pipelines)
        self._index_dir = Path(config.paths.index)
        self._dense_dir = Path(config.paths.dense_index)
        self._stamp = _manifest_stamp(self._index_dir, self._dense_dir)
        self._next_check = time.monotonic() + config.serve.reload_check_s
        self._reloading: threading.Thread | None = None
        self.reloads = 0  # generations swapped in since start

    @classmethod
    def open(cls, config: Config, *, use_funnel: bool = True, profiles: tuple[str, ...] | None = None,
             warm: bool = True) -> "SearchService":
        t0 = time.perf_counter()
        if not Path(config.paths.index, "manifest.json").exists():
            raise InputError(f"no index in {config.paths.index}: build one first (`funnel index` or "
                             "`funnel pipeline index`)")
        wanted = profiles or offered_profiles(config)
        service = cls(config, {p: open_pipeline(config, p, use_funnel) for p in wanted}, use_funnel=use_funnel)
        if warm:
            service._loaded.warm()
        log.info("search service ready: %d docs, index generation %s, profiles %s, stages %s, %.1fs",
                 service.n_docs, service.index_generation(), ", ".join(service.profiles), service.stage_names(),
                 time.perf_counter() - t0)
        return service

    # -- the generation being served ---------------------------------------
    @property
    def pipelines(self) -> dict[str, object]:
        return self._loaded.pipelines

    @property
    def retriever(self):
        return self._loaded.retriever

    @property
    def store(self) -> DocumentStore:
        return self._loaded.store

    @contextlib.contextmanager
    def _using(self):
        """The current `_Loaded`, held for the caller's request (see the module docstring)."""
        self.check_for_new_index()
        with self._swap:
            loaded = self._loaded
            loaded.users += 1
        try:
            yield loaded
        finally:
            with self._swap:
                loaded.users -= 1
                done = loaded.retired and loaded.users == 0 and not loaded.closed
                if done:
                    loaded.closed = True
            if done:
                loaded.close()

    def check_for_new_index(self, wait: bool = False) -> None:
        """Start loading a newly published index generation if the manifest changed (at most every
        ``serve.reload_check_s`` seconds, unless `wait`, which also waits for the load to finish)."""
        now = time.monotonic()
        with self._swap:
            if not wait and now < self._next_check:
                return
            self._next_check = now + self.config.serve.reload_check_s
            stamp = _manifest_stamp(self._index_dir, self._dense_dir)
            start = stamp is not None and stamp != self._stamp and self._reloading is None
            if start:
                self._stamp = stamp
                self._reloading = threading.Thread(target=self._reload, name="funnel-index-reload", daemon=True)
                self._reloading.start()
            thread = self._reloading
        if wait and thread is not None:
            thread.join()

    def _reload(self) -> None:
        try:
            on_disk = index_generation(self._index_dir)
            dense_on_disk = index_generation(self._dense_dir)  # a new `funnel embed` alone also reloads
            if on_disk is None or (on_disk == self._loaded.generation
                                   and dense_on_disk == self._loaded.dense_generation):
                return
            t0 = time.perf_counter()
            fresh = _Loaded({p: open_pipeline(self.config, p, self.use_funnel) for p in self.profiles})
            fresh.warm()
            with self._swap:
                old, self._loaded = self._loaded, fresh
                old.retired = True
                idle = old.users == 0 and not old.closed
                if idle:
                    old.closed = True
                self.reloads += 1
            if idle:
                old.close()
            log.info("serving index generation %s (was %s): %d docs, loaded in %.1fs", fresh.generation,
                     old.generation, fresh.retriever.reader.n_docs, time.perf_counter() - t0)
        except Exception as exc:  # a publish caught half-way, a model being replaced: keep the old one
            log.warning("index generation on disk could not be loaded (%s); still serving generation %s",
                        exc, self._loaded.generation)
            with self._swap:  # look again later, not on every request
                self._stamp = None
                self._next_check = time.monotonic() + 10 * max(self.config.serve.reload_check_s, 1.0)
        finally:
            with self._swap:
                self._reloading = None

    @property
    def n_docs(self) -> int:
        return int(self.retriever.reader.n_docs)

    @property
    def funnel_loaded(self) -> bool:
        """True when a trained ranking stage (coarse or fine) is loaded, not only recall and re-ranking."""
        return any(n in ("coarse", "fine") for p in self.pipelines.values() for n in p.stage_names)

    def stage_names(self, profile: str | None = None) -> list[str]:
        return list(self.pipelines[profile or self.default_profile].stage_names)

    def pipeline(self, profile: str | None = None):
        return self.pipelines[profile or self.default_profile]

    def runs_on_loop(self, profile: str | None = None) -> bool:
        """Whether the API should run a request on `profile` on its event loop, not in a worker thread
        (`quick_pipeline`); never under ``serve.pipeline_lock`` (the old server, kept as it was)."""
        return not self.config.serve.pipeline_lock and self._loaded.quick.get(profile or self.default_profile, False)

    def exclusive(self, profile: str | None = None):
        """A context manager holding a profile's pipeline alone (no request runs on it meanwhile): to
        change one of its models' settings for a moment."""
        return self._loaded.locks[profile or self.default_profile].exclusive()

    # -- queries ---------------------------------------------------------
    def rank(self, query: str, k: int, profile: str | None = None) -> Candidates:
        """Final candidates (best first) with their per-stage trace."""
        with self._using() as loaded:
            return self._rank(loaded, query, k, profile or self.default_profile)

    def _rank(self, loaded: _Loaded, query: str, k: int, profile: str) -> Candidates:
        if profile not in loaded.pipelines:
            raise InputError(f"profile {profile!r} is not offered by this server; offered: {', '.join(self.profiles)}")
        lock = loaded.locks[profile]
        with lock.exclusive() if self.config.serve.pipeline_lock else lock.shared():
            return loaded.pipelines[profile].run(Request(query=query, k=k, profile=profile))

    def search(self, query: str, k: int = 10, profile: str | None = None, explain: bool = False,
               explain_depth: int | None = None) -> SearchResult:
        with self._using() as loaded:
            return self._search(loaded, query, k, profile or self.default_profile, explain, explain_depth)

    def _search(self, loaded: _Loaded, query: str, k: int, profile: str, explain: bool,
                explain_depth: int | None) -> SearchResult:
        t0 = time.perf_counter()
        cands = self._rank(loaded, query, k, profile)
        n = min(k, len(cands))
        ids = cands.doc_ids[:n]
        words = query_words(query)
        scores = cands.scores[:n].tolist()
        hits = []
        for i, (doc_id, doc) in enumerate(zip(ids, loaded.hit_docs.get(ids))):
            hits.append(Hit(i + 1, doc_id, scores[i], doc[0] if doc else "", doc[1] if doc else None,
                            snippet_of(doc[2], words) if doc else ""))
        result = SearchResult(query, k, profile, (time.perf_counter() - t0) * 1000, hits, candidates=cands)
        if explain:
            result.stages = stage_tables(cands.trace, explain_depth or k)
            result.features = hit_features(cands, n)
        return result

    # -- documents -------------------------------------------------------
    def document(self, doc_id: str) -> Document | None:
        return self.store.get(doc_id)

    def index_generation(self) -> int | None:
        """The generation being served (`index_generation` reads the one on disk)."""
        return self._loaded.generation

    def close(self) -> None:
        with self._swap:
            loaded = self._loaded
            loaded.closed = True
        loaded.close()


def hit_features(cands: Candidates, n: int) -> dict[str, list[float | None]]:
    """One-dimensional numeric features of the first `n` candidates; NaN/inf become None (valid JSON)."""
    out = {}
    for name, vals in cands.features.items():
        arr = np.asarray(vals)
        if arr.ndim != 1 or arr.dtype.kind not in "fiub":
            continue
        out[name] = [float(v) if np.isfinite(v) else None for v in arr[:n].astype(np.float64)]
    return out


def index_generation(index_dir: str | Path) -> int | None:
    import json

    path = Path(index_dir) / "manifest.json"
    try:
        return int(json.loads(path.read_text(encoding="utf-8"))["generation"])
    except (OSError, ValueError, KeyError):
        return None

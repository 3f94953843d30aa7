"""Micro-batching for the funnel's model calls: concurrent requests' cross-encoder pairs (fine stage)
and query encodings (dense recall) run as one forward pass. Used by `funnel.ranking.serving.pipeline`
when ``pipeline.batch_wait_ms`` > 0; feeds the same stages, which see the wrapped encoders only.

Why: on a CPU a forward pass over 3 pairs leaves most of the matrix units idle and pays torch's
per-call overhead each time; 20 requests in flight make 20 such calls, each with its own intra-op
threads fighting for the same cores. One background thread per model takes whatever callers have
queued, waits at most ``wait_ms`` after the first for the rest of the requests then running the
pipeline, and runs them as one call (the model is then only ever used by that thread).

A lone request never waits: the batcher stops gathering as soon as it holds an item from every
request in the pipeline (`active`).

The rest of a request is Python holding the GIL. Twenty request threads doing it at once starve the
batcher threads, which need the GIL back after every torch op (a convoy: throughput fell below the
locked server's). So a `CpuGate` lets only a few requests (one per core) run their Python parts at a
time; a request gives its place up while it waits for a batched model call, so the batch still fills
from every request in flight. Results equal the unbatched call's up to float rounding: pairs
are padded to the longest in their batch, and padding is masked out of attention and pooling.
"""
from __future__ import annotations

import collections
import contextlib
import logging
import os
import threading
import time
from typing import Any, Callable, Sequence

import numpy as np


log = logging.getLogger(__name__)


class _Slot:
    __slots__ = ("item", "done", "result", "error")

    def __init__(self, item):
        self.item = item
        self.done = threading.Event()
        self.result = None
        self.error: BaseException | None = None


class CpuGate:
    """At most `n` threads at once between `hold` and its end, minus those inside `released`."""

    def __init__(self, n: int):
        self.n = n
        self._sem = threading.Semaphore(n)
        self._local = threading.local()

    @contextlib.contextmanager
    def hold(self):
        if getattr(self._local, "held", False):  # re-entered by the same thread (a pipeline inside a pipeline)
            yield
            return
        self._sem.acquire()
        self._local.held = True
        try:
            yield
        finally:
            self._local.held = False
            self._sem.release()

    @contextlib.contextmanager
    def released(self):
        """Give the place up meanwhile (waiting for another thread's work), when this thread holds one."""
        if not getattr(self._local, "held", False):
            yield
            return
        self._local.held = False
        self._sem.release()
        try:
            yield
        finally:
            self._sem.acquire()
            self._local.held = True


class MicroBatcher:
    """`batcher(item) -> result`, computed as ``fn([item, ...])[i]`` on one background thread over the
    items that concurrent callers submitted within ``wait_ms`` of the first.

    ``active``: how many callers may still submit (the pipeline's requests in flight); gathering stops
    when the queue holds that many. ``max_items``: most items per call of ``fn``.
    """

    def __init__(self, fn: Callable[[list], Sequence], wait_ms: float, *, active: Callable[[], int] | None = None,
                 max_items: int = 64, name: str = "funnel-batcher", gate: CpuGate | None = None):
        self.fn = fn
        self.gate = gate  # the callers' CpuGate, given up while they wait
        self.wait_s = max(float(wait_ms), 0.0) / 1000
        self.active = active or (lambda: 1 << 30)
        self.max_items = max_items
        self.name = name
        self._queue: collections.deque[_Slot] = collections.deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.calls = 0  # calls of fn, and items through it: items / calls is the mean batch
        self.items = 0

    def __call__(self, item):
        if self.wait_s <= 0:
            return self.fn([item])[0]
        slot = _Slot(item)
        with self._cond:
            if self._closed:
                raise RuntimeError(f"{self.name} is closed")
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
                self._thread.start()
            self._queue.append(slot)
            self._cond.notify_all()
        with self.gate.released() if self.gate is not None else contextlib.nullcontext():
            slot.done.wait()
        if slot.error is not None:
            raise slot.error
        return slot.result

    def _gather(self) -> list[_Slot]:
        with self._cond:
            while not self._queue and not self._closed:
                self._cond.wait()
            deadline = time.monotonic() + self.wait_s
            while len(self._queue) < min(self.max_items, max(self.active(), 1)) and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            return [self._queue.popleft() for _ in range(min(self.max_items, len(self._queue)))]

    def _loop(self) -> None:
        while True:
            batch = self._gather()
            if not batch:
                return  # closed and drained
            try:
                results = self.fn([s.item for s in batch])
                for slot, result in zip(batch, results):
                    slot.result = result
            except BaseException as exc:  # every caller of the batch sees the failure
                for slot in batch:
                    slot.error = exc
            finally:
                self.calls += 1
                self.items += len(batch)
                for slot in batch:
                    slot.done.set()

    def close(self) -> None:
        """Finish what is queued, then stop the thread."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)


class BatchedCrossEncoder:
    """A `funnel.ranking.models.cross_encoder.CrossEncoder` whose `score` calls from concurrent requests
    run as one `score_pairs` call. Everything else (model, tokenizer, device, ...) is the wrapped one's."""

    def __init__(self, encoder, wait_ms: float, *, active: Callable[[], int] | None = None,
                 batch_size: int = 32, max_requests: int = 64, gate: CpuGate | None = None):
        self.encoder = encoder
        self.batch_size = batch_size
        self.batcher = MicroBatcher(self._score_many, wait_ms, active=active, max_items=max_requests,
                                    name="funnel-cross-encoder-batcher", gate=gate)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.encoder, name)

    def score(self, query: str, docs: list[str], batch_size: int = 32) -> np.ndarray:
        if not docs:
            return np.zeros(0, np.float32)
        return self.batcher((query, list(docs)))

    def _score_many(self, items: list[tuple[str, list[str]]]) -> list[np.ndarray]:
        queries = [q for q, docs in items for _ in docs]
        docs = [d for _, ds in items for d in ds]
        scores = self.encoder.score_pairs(queries, docs, self.batch_size)  # (sum of pairs,)
        bounds = np.cumsum([0] + [len(ds) for _, ds in items])
        return [scores[a:b] for a, b in zip(bounds[:-1], bounds[1:])]

    def close(self) -> None:
        self.batcher.close()


class BatchedQueryEncoder:
    """A `funnel.ranking.models.dual_encoder.DualEncoder` whose `encode_queries` calls from concurrent
    requests run as one. Everything else is the wrapped encoder's."""

    def __init__(self, encoder, wait_ms: float, *, active: Callable[[], int] | None = None,
                 max_requests: int = 64, gate: CpuGate | None = None):
        self.encoder = encoder
        self.batcher = MicroBatcher(self._encode_many, wait_ms, active=active, max_items=max_requests,
                                    name="funnel-query-encoder-batcher", gate=gate)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.encoder, name)

    def encode_queries(self, queries: Sequence[str], batch_size: int = 64, device=None, **kw) -> np.ndarray:
        if device is not None or kw or not queries:
            return self.encoder.encode_queries(queries, batch_size, device, **kw)
        return self.batcher(list(queries))

    def _encode_many(self, items: list[list[str]]) -> list[np.ndarray]:
        flat = [q for qs in items for q in qs]
        vecs = self.encoder.encode_queries(flat, max(len(flat), 1))  # (n, dim): one forward pass
        bounds = np.cumsum([0] + [len(qs) for qs in items])
        return [vecs[a:b] for a, b in zip(bounds[:-1], bounds[1:])]

    def close(self) -> None:
        self.batcher.close()


def enable_batching(pipeline, wait_ms: float, *, batch_size: int = 32, cpu_slots: int = 0) -> list:
    """Route `pipeline`'s fine-stage cross-encoder and dense query encoder through micro-batchers
    (nothing when ``wait_ms`` <= 0), and give the pipeline a `CpuGate` of ``cpu_slots`` places (0: one
    per core) when it has a model to batch. Returns the batchers made (for `close`)."""
    if wait_ms <= 0:
        return []
    gate = CpuGate(cpu_slots or os.cpu_count() or 1)
    made = []
    for stage, _ in pipeline.stages:
        if stage.name == "fine" and not isinstance(stage.encoder, BatchedCrossEncoder):
            stage.encoder = BatchedCrossEncoder(stage.encoder, wait_ms, active=pipeline.running,
                                                batch_size=getattr(stage, "batch_size", batch_size), gate=gate)
            made.append(stage.encoder)
        dense = stage if stage.name == "dense" else getattr(stage, "dense", None)
        if dense is not None and not isinstance(dense.encoder, BatchedQueryEncoder):
            dense.encoder = BatchedQueryEncoder(dense.encoder, wait_ms, active=pipeline.running, gate=gate)
            made.append(dense.encoder)
    if made:
        pipeline.gate = gate
    return made

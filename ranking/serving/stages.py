"""The one stage shape of the funnel: `rank(request, candidates, k) -> candidates`.

Recall stages start from empty candidates; later stages reorder and cut. Requests are
generic (a text query, or a user's history for recommendation), so the same stages serve
search and recommendation. Every stage appends a `StageTrace` (its scores and timing), which
is what `--explain`, the API and the dashboard show.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


@dataclass
class Request:
    query: str | None = None  # text query (search)
    history: list[str] | None = None  # doc ids the user interacted with (recommendation)
    k: int = 10  # results wanted at the end
    profile: str = "cpu"
    pinned: list[str] = field(default_factory=list)  # doc ids forced to the top, in order
    blocked: list[str] = field(default_factory=list)  # doc ids never shown
    # recommendation only (search leaves them unset): who asks and when, for the user and time features
    user: str | None = None  # user id; None or an id the log does not know: features unknown (cold start)
    history_ts: Sequence[int] | None = None  # Unix seconds of each history item, oldest first
    now: int | None = None  # request time, Unix seconds


@dataclass
class StageTrace:
    stage: str
    doc_ids: list[str]
    scores: np.ndarray  # float32 (n,) (recommendation keeps its stages' float64)
    ms: float
    detail: dict | None = None  # a stage's own record of its decisions (recommendation: the rerank rules)


@dataclass
class Candidates:
    """Candidate documents, best first: parallel arrays plus named per-candidate features."""
    ords: np.ndarray  # int64 (n,) global doc ordinals in the index (recommendation: item indices)
    doc_ids: list[str]
    scores: np.ndarray  # float32 (n,) the latest stage's score
    features: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (n,)
    trace: list[StageTrace] = field(default_factory=list)

    @classmethod
    def empty(cls) -> "Candidates":
        return cls(np.zeros(0, np.int64), [], np.zeros(0, np.float32))

    def __len__(self) -> int:
        return len(self.doc_ids)

    def take(self, idx: np.ndarray, scores: np.ndarray | None = None) -> "Candidates":
        """Subset/reorder by positions `idx`; optionally replace the scores (aligned with idx)."""
        idx = np.asarray(idx, dtype=np.int64)
        return Candidates(self.ords[idx], [self.doc_ids[i] for i in idx],
                          self.scores[idx] if scores is None else np.asarray(scores, np.float32),
                          {k: v[idx] for k, v in self.features.items()}, self.trace)


class Stage(Protocol):
    name: str

    def rank(self, request: Request, candidates: Candidates, k: int) -> Candidates:
        ...


def run_stages(stages: Sequence[tuple[Stage, int]], request: Request) -> Candidates:
    """Pass a request through ``(stage, k it keeps)`` pairs, recall first: each keeps at least ``request.k``
    candidates and the last exactly ``request.k`` (cut here when the last is not a rerank stage)."""
    cands = Candidates.empty()
    last = len(stages) - 1
    for i, (stage, k) in enumerate(stages):
        cands = stage.rank(request, cands, request.k if i == last else max(k, request.k))
    if stages and stages[-1][0].name != "rerank":
        cands = cands.take(np.arange(min(request.k, len(cands))))
    return cands

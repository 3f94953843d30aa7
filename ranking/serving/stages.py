"""The one stage shape of the funnel: `rank(request, candidates, k) -> candidates`.

Recall stages start from empty candidates; later stages reorder and cut. Requests are
generic (a text query, or a user's history for recommendation), so the same stages serve
search and recommendation. Every stage appends a `StageTrace` (its scores and timing), which
is what `--explain`, the API and the dashboard show.
"""
from __future__ import annotations

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


@dataclass
class StageTrace:
    stage: str
    doc_ids: list[str]
    scores: np.ndarray  # float32 (n,)
    ms: float


@dataclass
class Candidates:
    """Candidate documents, best first: parallel arrays plus named per-candidate features."""
    ords: np.ndarray  # int64 (n,) global doc ordinals in the index
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

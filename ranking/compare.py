"""Comparing two rankings of the same queries: per-query metric deltas, the queries that improved and
regressed, and paired significance tests over queries, as IR papers report them. Feeds
`funnel compare` and the dashboard's Compare page.

Pure functions over runs ({qid: {docid: score}}) and judgements; reading run files is
`funnel.ranking.evaluate.read_trec_run`'s job.

Both tests are paired over the judged queries (a query a run lacks scores 0 there, as in `evaluate`):
- the paired t-test (`scipy.stats.ttest_rel`) assumes the per-query differences are roughly normal;
- the paired randomisation test (Fisher's sign-flip permutation test, Smucker et al. 2007) assumes
  nothing about their shape: under the null hypothesis each query's A and B labels are exchangeable,
  so each difference's sign is flipped at random and the mean difference of `n` such draws is compared
  with the observed one. Its seed is fixed, so the p-value is reproducible.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from funnel.ranking.evaluate import Run, per_query

COMPARE_METRICS = ("nDCG@10", "Recall@100")
EPS = 1e-9  # a difference smaller than this is a tie (pytrec_eval's floats)


def paired_t_test(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided p-value of the paired t-test of B - A; 1.0 when every difference is equal (no variance)."""
    from scipy.stats import ttest_rel

    a, b = np.asarray(a, float), np.asarray(b, float)
    d = b - a
    if len(d) < 2 or np.allclose(d, d[0], atol=EPS):
        return 1.0 if len(d) < 2 or abs(d[0]) < EPS else 0.0
    return float(ttest_rel(b, a).pvalue)


def randomisation_test(a: np.ndarray, b: np.ndarray, n: int = 10_000, seed: int = 0) -> float:
    """Two-sided p-value of the paired randomisation (sign-flip) test of mean(B - A).

    p = (1 + #{draws with |mean| >= |observed mean|}) / (1 + n): never 0, as the observed labelling
    is one of the possible ones. With at most 16 queries every one of the 2^n labellings is counted
    instead (the exact test).
    """
    d = np.asarray(b, float) - np.asarray(a, float)  # (n_queries,)
    if not len(d):
        return 1.0
    observed = abs(d.mean())
    if len(d) <= 16:  # exact: every sign pattern once
        signs = ((np.arange(2 ** len(d))[:, None] >> np.arange(len(d))) & 1) * 2 - 1  # (2^q, q)
        means = np.abs((signs * d).mean(axis=1))
        return float(np.mean(means >= observed - EPS))
    rng = np.random.default_rng(seed)
    signs = rng.integers(0, 2, size=(n, len(d)), dtype=np.int8) * 2 - 1  # (n, q)
    means = np.abs((signs * d).mean(axis=1))
    return float((1 + np.count_nonzero(means >= observed - EPS)) / (1 + n))


@dataclass
class MetricComparison:
    """One metric of a comparison: means, mean difference (B - A), counts and p-values."""
    metric: str
    mean_a: float
    mean_b: float
    improved: int
    regressed: int
    tied: int
    p_t_test: float
    p_randomisation: float

    @property
    def delta(self) -> float:
        return self.mean_b - self.mean_a


@dataclass
class Comparison:
    """Per-query scores of both runs and the summary per metric."""
    metrics: tuple[str, ...]
    queries: list[str]  # judged query ids, in id order
    a: dict[str, dict[str, float]]  # qid -> metric -> score of run A
    b: dict[str, dict[str, float]]
    summary: list[MetricComparison] = field(default_factory=list)

    def delta(self, qid: str, metric: str) -> float:
        return self.b[qid][metric] - self.a[qid][metric]

    def rows(self, metric: str | None = None) -> list[dict]:
        """One dict per query (qid, each metric's A, B and delta), ordered by the delta of `metric`
        (default: the first), largest regression first."""
        metric = metric or self.metrics[0]
        rows = []
        for q in self.queries:
            row: dict = {"qid": q}
            for m in self.metrics:
                row[f"{m} A"], row[f"{m} B"] = self.a[q][m], self.b[q][m]
                row[f"{m} delta"] = self.delta(q, m)
            rows.append(row)
        return sorted(rows, key=lambda r: (r[f"{metric} delta"], r["qid"]))

    def improved(self, metric: str | None = None) -> list[str]:
        metric = metric or self.metrics[0]
        return sorted((q for q in self.queries if self.delta(q, metric) > EPS), key=lambda q: -self.delta(q, metric))

    def regressed(self, metric: str | None = None) -> list[str]:
        metric = metric or self.metrics[0]
        return sorted((q for q in self.queries if self.delta(q, metric) < -EPS), key=lambda q: self.delta(q, metric))


def compare_runs(run_a: Run, run_b: Run, qrels: dict[str, dict[str, int]], metrics=COMPARE_METRICS,
                 permutations: int = 10_000, seed: int = 0) -> Comparison:
    """Per-query `metrics` of both runs over the judged queries of `qrels`, and the paired tests."""
    metrics = tuple(metrics)
    pa, pb = per_query(run_a, qrels, metrics), per_query(run_b, qrels, metrics)
    queries = sorted(pa)
    cmp = Comparison(metrics, queries, pa, pb)
    for m in metrics:
        a = np.array([pa[q][m] for q in queries])  # (n_queries,)
        b = np.array([pb[q][m] for q in queries])
        d = b - a
        cmp.summary.append(MetricComparison(
            m, float(a.mean()) if len(a) else 0.0, float(b.mean()) if len(b) else 0.0,
            int((d > EPS).sum()), int((d < -EPS).sum()), int((np.abs(d) <= EPS).sum()),
            paired_t_test(a, b), randomisation_test(a, b, permutations, seed)))
    return cmp


def rank_movement(run_a: dict[str, float], run_b: dict[str, float], depth: int = 20) -> list[dict]:
    """One query's two rankings side by side: every document in either top `depth`, with its rank in
    A and in B (None when outside that run's list) and its movement from A to B (positive: moved up)."""
    def ranks(run):
        order = sorted(run.items(), key=lambda x: (-x[1], x[0]))
        return {d: i + 1 for i, (d, _) in enumerate(order)}

    ra, rb = ranks(run_a), ranks(run_b)
    shown = [d for d, r in sorted(rb.items(), key=lambda x: x[1]) if r <= depth]
    shown += [d for d, r in sorted(ra.items(), key=lambda x: x[1]) if r <= depth and d not in shown]
    rows = []
    for d in shown:
        a, b = ra.get(d), rb.get(d)
        rows.append({"doc_id": d, "rank A": a, "rank B": b,
                     "movement": None if a is None or b is None else a - b})
    return rows

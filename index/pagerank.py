"""PageRank on one machine: the link graph -> an importance score per document. Feeds the coarse
ranker (a feature) and the optional BM25 prior; the Spark job (`funnel.pipelines.pagerank_job`) computes the
same numbers for graphs past one machine.

Semantics (chosen to match ``networkx.pagerank`` on a ``DiGraph``, and documented because each is a choice)
-----------------------------------------------------------------------------------------------------
- **Duplicate edges collapse**: a page linking twice to the same target casts one vote, as in a
  ``nx.DiGraph`` (``graph_from_edges(..., collapse_duplicates=False)`` counts each link instead, like
  ``nx.MultiDiGraph``, whose scipy adjacency sums parallel edges).
- **Self-loops count** as an out-link (a page keeps part of its own rank), as networkx does.
- **Dangling nodes** (no out-links, or only links leaving the graph) hand their whole rank to every node
  by the ``dangling`` weights, which default to the personalisation vector, which defaults to uniform.
- **Links to pages outside the graph are dropped** (they have no node to receive rank), so a page whose
  links all leave the site is dangling.
- The iteration is ``x' = d (x M + sum(x[dangling]) w) + (1 - d) p`` from a uniform start, without
  renormalisation, and stops when ``|x' - x|_1 < tol`` (networkx stops at ``N * tol``: pass its ``tol``
  times N to reproduce its stopping point, or a tight tol on both to compare fixed points).

Entry points: `pagerank(adj)` on a CSR adjacency (what `graph_from_edges` builds from id pairs), and
`pagerank_edges(src, dst, n)` straight from integer edge arrays, which builds the transposed transition
matrix in one sort and skips the adjacency (the Spark driver path and the benchmark use it).

Files (written by `save_pagerank`, read by `load_pagerank`)
-----------------------------------------------------------
- ``HOME/features/pagerank.parquet``: columns ``doc_id`` (string), ``pagerank`` (float64, sums to 1 over
  the graph). A Spark job writes the same columns as a folder of part files under the same name.
- ``HOME/features/doc_features.parquet`` (the Spark features job): ``doc_id``, ``pagerank`` and other
  per-document columns; `load_pagerank` falls back to it.
"""
from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from funnel.core.config import PathsConfig
from funnel.core.device import resolve_device
from funnel.core.errors import FunnelError, InputError


log = logging.getLogger(__name__)

PAGERANK_FILE = "pagerank.parquet"
FEATURES_FILE = "doc_features.parquet"


@dataclass
class LinkGraph:
    """A directed graph over documents: ``adj[i, j]`` = weight of the link i -> j (CSR, float64)."""
    nodes: list[str]
    adj: sp.csr_array  # (n, n)

    @property
    def n_nodes(self) -> int:
        return len(self.nodes)

    @property
    def n_edges(self) -> int:
        return int(self.adj.nnz)


@dataclass
class PageRankResult:
    scores: np.ndarray  # float64 (n,), sums to 1
    iterations: int
    converged: bool
    backend: str  # "scipy", "torch-cpu" or "torch-cuda"


def graph_from_edges(edges: Iterable[tuple[str, str]], nodes: Sequence[str] | None = None, *,
                     collapse_duplicates: bool = True) -> LinkGraph:
    """(src, dst) id pairs -> `LinkGraph`.

    With `nodes` given, only those are nodes (links from or to anything else are dropped, see the
    module docstring); without, every endpoint is a node, in order of first appearance.
    """
    src_ids, dst_ids = [], []
    if nodes is None:
        index: dict[str, int] = {}
        for s, d in edges:
            src_ids.append(index.setdefault(s, len(index)))
            dst_ids.append(index.setdefault(d, len(index)))
        node_list = list(index)
    else:
        node_list = list(nodes)
        index = {n: i for i, n in enumerate(node_list)}
        if len(index) != len(node_list):
            raise InputError("graph_from_edges: the node list holds duplicate ids")
        for s, d in edges:
            i, j = index.get(s), index.get(d)
            if i is not None and j is not None:
                src_ids.append(i)
                dst_ids.append(j)
    adj = adjacency(np.asarray(src_ids, np.int64), np.asarray(dst_ids, np.int64), len(node_list),
                    collapse_duplicates=collapse_duplicates)
    return LinkGraph(node_list, adj)


def adjacency(src: np.ndarray, dst: np.ndarray, n: int, *, collapse_duplicates: bool = True) -> sp.csr_array:
    """Integer edge arrays -> (n, n) CSR adjacency; duplicates become weight 1 or their count.

    Built by one sort of ``src * n + dst`` keys (`_sorted_pairs`: faster than scipy's COO
    conversion plus ``sum_duplicates``), which leaves rows and their column indices sorted.
    """
    rows, cols, counts = _sorted_pairs(src, dst, n)
    data = np.ones(len(cols)) if collapse_duplicates else counts
    return _csr(rows, cols, data, n)


def _sorted_pairs(major: np.ndarray, minor: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct (major, minor) pairs of two edge arrays, sorted, and how often each occurs.

    One sort of ``major * n + minor`` keys, 32-bit when ``n * n`` fits (half the bytes to sort).
    Returns (rows, cols, counts): (k,) arrays, counts as float64.
    """
    major = np.asarray(major)
    minor = np.asarray(minor)
    _check_edges(major, minor, n)
    kt = np.uint32 if n * n < 2**32 else np.int64
    keys = major.astype(kt) * kt(n)  # (m,) by major, then minor once sorted
    keys += minor.astype(kt)
    keys.sort()
    starts, uniq = _unique_sorted(keys)
    rows = uniq // kt(n)
    cols = uniq - rows * kt(n)
    counts = np.diff(np.append(starts, len(keys))).astype(np.float64)
    return rows, cols, counts


def _csr(rows: np.ndarray, cols: np.ndarray, data: np.ndarray, n: int) -> sp.csr_array:
    """(n, n) CSR from sorted, distinct (row, col) pairs."""
    idx = np.int32 if max(len(cols), n) < 2**31 else np.int64
    indptr = np.zeros(n + 1, dtype=idx)
    np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
    return sp.csr_array((data, cols.astype(idx), indptr), shape=(n, n))


def _check_edges(src: np.ndarray, dst: np.ndarray, n: int) -> None:
    if len(src) != len(dst):
        raise InputError(f"adjacency: {len(src)} sources but {len(dst)} targets")
    if len(src) and (min(src.min(), dst.min()) < 0 or max(src.max(), dst.max()) >= n):
        raise InputError(f"adjacency: node ids must lie in [0, {n})")


def _unique_sorted(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(start of each run, the distinct values) of sorted `keys`."""
    first = np.ones(len(keys), dtype=bool)
    np.not_equal(keys[1:], keys[:-1], out=first[1:])
    starts = np.flatnonzero(first)
    return starts, keys[starts]


def _distribution(vec: np.ndarray | None, n: int, name: str) -> np.ndarray | None:
    if vec is None:
        return None
    vec = np.asarray(vec, np.float64)
    if vec.shape != (n,):
        raise InputError(f"pagerank: {name} must have one weight per node ({n}), got shape {vec.shape}")
    if (vec < 0).any() or not np.isfinite(vec).all() or vec.sum() <= 0:
        raise InputError(f"pagerank: {name} weights must be finite, non-negative and not all zero")
    return vec / vec.sum()


def transition_from_edges(src: np.ndarray, dst: np.ndarray, n: int, *,
                          collapse_duplicates: bool = True) -> tuple[sp.csr_array, np.ndarray]:
    """Integer edge arrays -> (``P^T`` as CSR, is_dangling): the transposed transition matrix, built directly.

    ``P[i, j] = adj[i, j] / out(i)``; its transpose's rows are the in-links of each node, so one
    PageRank step is a CSR mat-vec (a gather) with no transpose copy. Built by one sort of
    ``dst * n + src`` keys (`_sorted_pairs`).
    """
    rows, cols, counts = _sorted_pairs(dst, src, n)  # rows: targets, cols: sources
    weight = None if collapse_duplicates else counts
    out = np.bincount(cols, weights=weight, minlength=n).astype(np.float64)  # (n,) out-weight of each node
    is_dangling = out == 0
    inv = np.divide(1.0, out, out=np.zeros(n), where=~is_dangling)
    data = inv[cols] if weight is None else weight * inv[cols]
    return _csr(rows, cols, data, n), is_dangling


def pagerank_edges(src: np.ndarray, dst: np.ndarray, n: int, damping: float = 0.85, tol: float = 1e-10,
                   max_iter: int = 200, *, collapse_duplicates: bool = True, **kwargs) -> PageRankResult:
    """`pagerank` straight from integer edge arrays (node ids in ``[0, n)``): the fast path for big graphs."""
    _check_damping(damping)
    mt, is_dangling = transition_from_edges(src, dst, n, collapse_duplicates=collapse_duplicates)
    return _power_iteration(mt, is_dangling, damping, tol, max_iter, **kwargs)


def _check_damping(damping: float) -> None:
    if not 0.0 <= damping < 1.0:
        raise InputError(f"pagerank: damping must lie in [0, 1), got {damping}")


def pagerank(adj: sp.csr_array | sp.csr_matrix, damping: float = 0.85, tol: float = 1e-10, max_iter: int = 200, *,
             personalization: np.ndarray | None = None, dangling: np.ndarray | None = None,
             backend: str = "auto", strict: bool = False) -> PageRankResult:
    """Power iteration for PageRank on a weighted adjacency matrix (``adj[i, j]``: link i -> j).

    `personalization` (teleport) and `dangling` are per-node weights (normalised here); `backend` is
    "scipy", "torch" (torch sparse on CUDA when present, else CPU) or "auto" (torch on a GPU, scipy
    otherwise). With `strict`, not converging within `max_iter` raises instead of logging a warning.
    """
    _check_damping(damping)
    adj = sp.csr_array(adj, dtype=np.float64)
    n = adj.shape[0]
    if adj.shape != (n, n):
        raise InputError(f"pagerank: adjacency must be square, got {adj.shape}")
    out = np.asarray(adj.sum(axis=1)).ravel()  # (n,) out-weight of each node
    is_dangling = out == 0
    inv = np.divide(1.0, out, out=np.zeros(n), where=~is_dangling)
    # Row-normalise adj into the transition matrix P (P[i, j] = adj[i, j] / out[i]); one step is
    # x' = P^T x, and P^T is P's arrays read as CSC: a mat-vec without any transpose copy.
    rows = np.repeat(np.arange(n), np.diff(adj.indptr))  # (nnz,) source of each stored edge
    trans = sp.csr_array((adj.data * inv[rows], adj.indices, adj.indptr), shape=(n, n))
    return _power_iteration(trans.T, is_dangling, damping, tol, max_iter, personalization=personalization,
                            dangling=dangling, backend=backend, strict=strict)


def _power_iteration(m, is_dangling: np.ndarray, damping: float, tol: float, max_iter: int, *,
                     personalization: np.ndarray | None = None, dangling: np.ndarray | None = None,
                     backend: str = "auto", strict: bool = False) -> PageRankResult:
    """The iteration of the module docstring on ``m = P^T`` (CSR or CSC) with the given dangling nodes."""
    n = m.shape[0]
    if n == 0:
        return PageRankResult(np.zeros(0), 0, True, "scipy")
    p = _distribution(personalization, n, "personalization")
    p = np.full(n, 1.0 / n) if p is None else p
    w = _distribution(dangling, n, "dangling")
    w = p if w is None else w
    if backend == "auto":
        backend = "torch" if _cuda_available() else "scipy"
    if backend == "torch":
        x, it, ok, name = _iterate_torch(m, p, w, is_dangling, damping, tol, max_iter)
    elif backend == "scipy":
        x, it, ok, name = _iterate_scipy(m, p, w, is_dangling, damping, tol, max_iter)
    else:
        raise InputError(f"pagerank: backend must be auto, scipy or torch, got {backend!r}")
    if not ok:
        msg = f"PageRank did not converge to tol {tol:g} in {max_iter} iterations"
        if strict:
            raise FunnelError(msg + ": raise pagerank.max_iter or loosen pagerank.tol")
        log.warning(msg)
    return PageRankResult(x, it, ok, name)


def _iterate_scipy(m, p, w, is_dangling, damping, tol, max_iter):
    n = len(p)
    x = np.full(n, 1.0 / n)
    teleport = (1.0 - damping) * p  # (n,)
    dangling_idx = np.flatnonzero(is_dangling)
    for it in range(1, max_iter + 1):
        x_new = m @ x
        x_new *= damping
        x_new += (damping * x[dangling_idx].sum()) * w + teleport
        err = np.abs(x_new - x).sum()
        x = x_new
        if err < tol:
            return x, it, True, "scipy"
    return x, max_iter, False, "scipy"


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def _iterate_torch(m, p, w, is_dangling, damping, tol, max_iter):
    """The same iteration with a torch sparse CSR mat-vec: on the GPU when there is one (float64)."""
    import torch

    device, _ = resolve_device("auto")
    m = sp.csr_array(m)  # (n, n) P^T as CSR for torch
    with warnings.catch_warnings():  # "sparse CSR support is in beta": the mat-vec is all we use
        warnings.simplefilter("ignore", UserWarning)
        mt = torch.sparse_csr_tensor(torch.from_numpy(m.indptr.astype(np.int64)),
                                     torch.from_numpy(m.indices.astype(np.int64)),
                                     torch.from_numpy(m.data), size=m.shape, dtype=torch.float64, device=device,
                                     check_invariants=False)
    pt = torch.from_numpy(p).to(device)
    wt = torch.from_numpy(w).to(device)
    dmask = torch.from_numpy(is_dangling.astype(np.float64)).to(device)  # 0/1: a dot, not a boolean gather (no sync)
    n = len(p)
    x = torch.full((n,), 1.0 / n, dtype=torch.float64, device=device)
    teleport = (1.0 - damping) * pt
    name = f"torch-{device.type}"
    for it in range(1, max_iter + 1):
        x_new = damping * (mt @ x) + (damping * torch.dot(x, dmask)) * wt + teleport  # (n,)
        err = float((x_new - x).abs().sum())  # one device sync per iteration
        x = x_new
        if err < tol:
            return x.cpu().numpy(), it, True, name
    return x.cpu().numpy(), max_iter, False, name


def pagerank_graph(graph: LinkGraph, damping: float = 0.85, tol: float = 1e-10, max_iter: int = 200,
                   **kwargs) -> dict[str, float]:
    """PageRank of a `LinkGraph` as ``{node id: score}``."""
    res = pagerank(graph.adj, damping, tol, max_iter, **kwargs)
    return dict(zip(graph.nodes, res.scores.tolist()))


# -- storage --------------------------------------------------------------------------------------
def save_pagerank(path: str | Path, doc_ids: Sequence[str], scores: np.ndarray) -> Path:
    """Write ``doc_id, pagerank`` Parquet atomically (temp file, then rename)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table({"doc_id": pa.array(list(doc_ids), pa.string()),
                      "pagerank": pa.array(np.asarray(scores, np.float64), pa.float64())})
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp)
    if path.is_dir():  # a Spark job's folder of part files from an earlier run
        import shutil
        shutil.rmtree(path)
    tmp.replace(path)
    return path


def load_pagerank(paths_or_home: str | Path | Sequence[str | Path]) -> dict[str, float]:
    """``{doc_id: pagerank}`` from a Parquet file/folder, a list of them, or a Funnel home; ``{}`` when absent.

    Given a home, reads ``HOME/features/pagerank.parquet``, else the ``pagerank`` column of
    ``HOME/features/doc_features.parquet``.
    """
    import pyarrow.parquet as pq

    if isinstance(paths_or_home, (str, Path)):
        p = Path(paths_or_home)
        if p.is_dir() and not p.suffix == ".parquet":
            paths = PathsConfig(str(p))
            cands = [paths.pagerank, paths.doc_features]
        else:
            cands = [p]
    else:
        cands = [Path(x) for x in paths_or_home]
    for cand in cands:
        if not cand.exists():
            continue
        try:
            table = pq.read_table(cand, columns=["doc_id", "pagerank"])
        except (OSError, ValueError, KeyError) as exc:
            raise InputError(f"{cand}: not a PageRank Parquet file with columns doc_id, pagerank ({exc})") from None
        ids = table.column("doc_id").to_pylist()
        vals = table.column("pagerank").to_numpy(zero_copy_only=False)
        return {d: float(v) for d, v in zip(ids, vals) if v == v}  # drop nulls/NaN
    return {}


def pagerank_prior(bm25_scores: np.ndarray, pagerank: np.ndarray, weight: float, n_nodes: int) -> np.ndarray:
    """BM25 plus a PageRank prior: ``score + weight * log(pagerank * n_nodes)``.

    ``pagerank * n_nodes`` is 1 for a page of average importance, so the prior is 0 there, positive for
    hubs and negative for pages few link to. A missing PageRank (0 or NaN, e.g. a page outside the graph)
    counts as average. `pagerank` is aligned with `bm25_scores`; `n_nodes` is the graph's size
    (``len(load_pagerank(home))``).
    """
    scores = np.asarray(bm25_scores, np.float64)
    pr = np.asarray(pagerank, np.float64)
    if pr.shape != scores.shape:
        raise InputError(f"pagerank_prior: {pr.shape} PageRank values for {scores.shape} scores")
    if weight == 0 or n_nodes <= 0:
        return scores.copy()
    rel = np.where(np.isfinite(pr) & (pr > 0), pr * n_nodes, 1.0)
    return scores + weight * np.log(rel)

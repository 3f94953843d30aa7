"""The vector index beside the inverted index: document embeddings for dense recall, with exact and
approximate (FAISS IVF / HNSW) inner-product search. Fed by `funnel embed` (`funnel.ranking.models.dual_encoder.embed_store`);
feeds `funnel.ranking.serving.recall.DenseRecall` and the funnel's dense-cosine feature (`VectorIndex.lookup`).

Vectors are L2-normalised, so inner product = cosine. Search backends:
- ``exact``: brute force; on a CUDA device a torch matmul + topk (faiss-gpu is not needed), on CPU
  FAISS ``IndexFlatIP`` (numpy matmul + argpartition when FAISS is missing);
- ``ivf``: FAISS ``IndexIVFFlat`` (inner product), ``nlist`` k-means cells, ``nprobe`` visited per query;
- ``hnsw``: FAISS ``IndexHNSWFlat`` (inner product), ``M`` links per node, ``efSearch`` at query time;
- ``auto``: exact below `ANN_MIN_VECTORS` vectors or on a GPU, else HNSW.
ANN structures are derived data: built in memory when the index is opened (seconds for 100k vectors),
never the source of truth.

Files (folder ``HOME/index/dense/``, written by `VectorIndexWriter`):
- ``manifest.json``: ``{"format": 1, "generation": int, "dim": int, "metric": "ip", "count": int,
  "parts": [{"name": "part-000001", "count": int}], "meta": {...}}``; ``meta`` holds what the writer
  was told: the encoder (``model``, ``model_hash``, lengths) and ``last_seq``, the store sequence number
  up to which documents are embedded. Replaced atomically (write + rename): readers see the old or the
  new generation, never a half-written one.
- ``part-NNNNNN/vectors.npy``: float32 (count, dim) unit rows; ``part-NNNNNN/doc_ids.json``: list of
  count strings, row-aligned. Parts are append-only; a doc id present in several parts resolves to the
  newest part (an updated document re-embedded by an incremental add).
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path

import numpy as np

from funnel.core.errors import FunnelError, InputError, MissingDependencyError


log = logging.getLogger(__name__)

FORMAT = 1
MANIFEST = "manifest.json"
ANN_MIN_VECTORS = 50_000  # below this, exact search is fast enough and loses nothing
BACKENDS = ("auto", "exact", "ivf", "hnsw")


def read_manifest(index_dir: str | Path) -> dict | None:
    path = Path(index_dir) / MANIFEST
    if not path.exists():
        return None
    manifest = json.loads(path.read_text(encoding="utf-8"))
    if manifest.get("format", 0) > FORMAT:
        raise FunnelError(f"{path}: vector index format {manifest['format']} is newer than this Funnel reads ({FORMAT})")
    return manifest


def _write_json_atomic(path: Path, data) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)  # atomic on POSIX: readers see the old or the new manifest


def _check_vectors(vectors: np.ndarray, doc_ids: list[str], dim: int | None) -> np.ndarray:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2:
        raise InputError(f"vectors must be a 2-d array (n, dim), got shape {vectors.shape}")
    if len(doc_ids) != vectors.shape[0]:
        raise InputError(f"{len(doc_ids)} doc ids for {vectors.shape[0]} vectors")
    if dim is not None and vectors.shape[1] != dim:
        raise InputError(f"vectors have dimension {vectors.shape[1]}, the index holds {dim}: rebuild it")
    if not np.isfinite(vectors).all():
        raise InputError("vectors contain NaN or infinity")
    return vectors


class VectorIndexWriter:
    """Publishes vectors to an index folder: `replace` (a fresh generation) or `add` (a new part).

    Each call writes its part under a temporary name, renames it into place, then atomically
    replaces the manifest; a crash before the manifest swap leaves the previous generation intact
    (the orphan part is removed by the next write).
    """

    def __init__(self, index_dir: str | Path):
        self.dir = Path(index_dir)

    def _write_part(self, vectors: np.ndarray, doc_ids: list[str], number: int) -> dict:
        name = f"part-{number:06d}"
        tmp = self.dir / f".{name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        np.save(tmp / "vectors.npy", vectors)
        (tmp / "doc_ids.json").write_text(json.dumps(doc_ids), encoding="utf-8")
        final = self.dir / name
        shutil.rmtree(final, ignore_errors=True)  # an orphan of an interrupted write
        os.replace(tmp, final)
        return {"name": name, "count": int(vectors.shape[0])}

    def _publish(self, manifest: dict) -> dict:
        _write_json_atomic(self.dir / MANIFEST, manifest)
        live = {p["name"] for p in manifest["parts"]}
        for child in self.dir.iterdir():  # parts no generation refers to any more
            if child.is_dir() and child.name.startswith("part-") and child.name not in live:
                shutil.rmtree(child, ignore_errors=True)
        return manifest

    def replace(self, vectors: np.ndarray, doc_ids: list[str], meta: dict | None = None) -> dict:
        """Make (vectors, doc_ids) the whole index. Returns the new manifest."""
        self.dir.mkdir(parents=True, exist_ok=True)
        old = read_manifest(self.dir)
        vectors = _check_vectors(vectors, list(doc_ids), None)
        gen = (old["generation"] + 1) if old else 1
        part = self._write_part(vectors, list(doc_ids), gen)
        manifest = {"format": FORMAT, "generation": gen, "dim": int(vectors.shape[1]), "metric": "ip",
                    "count": part["count"], "parts": [part], "meta": dict(meta or {}), "published": time.time()}
        return self._publish(manifest)

    def add(self, vectors: np.ndarray, doc_ids: list[str], meta: dict | None = None) -> dict:
        """Append vectors as a new part (newer rows win for repeated doc ids); `meta` keys are updated."""
        old = read_manifest(self.dir)
        if old is None:
            return self.replace(vectors, doc_ids, meta)
        vectors = _check_vectors(vectors, list(doc_ids), old["dim"])
        if vectors.shape[0] == 0:
            return old
        gen = old["generation"] + 1
        part = self._write_part(vectors, list(doc_ids), gen)
        manifest = dict(old, generation=gen, parts=old["parts"] + [part], count=old["count"] + part["count"],
                        meta={**old.get("meta", {}), **(meta or {})}, published=time.time())
        return self._publish(manifest)


class VectorIndex:
    """A snapshot of a vector index folder (the generation its manifest named when opened).

    ``doc_ids[row]`` / ``vectors[row]`` are the live rows (a doc id appears once). Search returns rows.
    """

    def __init__(self, index_dir: str | Path, *, backend: str = "auto", device: str = "cpu",
                 nlist: int = 0, nprobe: int = 128, hnsw_m: int = 16, ef_search: int = 512,
                 ef_construction: int = 100, seed: int = 0):
        self.dir = Path(index_dir)
        manifest = read_manifest(self.dir)
        if manifest is None:
            raise FunnelError(f"no vector index at {self.dir}: build one with `funnel embed`")
        if backend not in BACKENDS:
            raise InputError(f"recall.ann: unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        self.manifest = manifest
        self.meta: dict = manifest.get("meta", {})
        vecs, ids = [], []
        for part in manifest["parts"]:
            folder = self.dir / part["name"]
            vecs.append(np.load(folder / "vectors.npy", mmap_mode="r"))
            ids.extend(json.loads((folder / "doc_ids.json").read_text(encoding="utf-8")))
        all_vecs = np.concatenate(vecs) if vecs else np.zeros((0, manifest["dim"]), np.float32)
        last = {d: i for i, d in enumerate(ids)}  # newest row of each doc id
        if len(last) == len(ids):
            self.vectors = np.ascontiguousarray(all_vecs, dtype=np.float32)  # (n, dim)
            self.doc_ids = ids
        else:
            rows = np.array(sorted(last.values()), dtype=np.int64)
            self.vectors = np.ascontiguousarray(all_vecs[rows], dtype=np.float32)
            self.doc_ids = [ids[r] for r in rows]
        self._row_of = {d: i for i, d in enumerate(self.doc_ids)}
        self.dim = int(manifest["dim"])
        self.device = device
        if backend == "auto":
            backend = "exact" if (len(self.doc_ids) < ANN_MIN_VECTORS or str(device).startswith("cuda")) else "hnsw"
        self.backend = backend
        self._ann = None
        self._torch_vectors = None
        self._params = dict(nlist=nlist, nprobe=nprobe, hnsw_m=hnsw_m, ef_search=ef_search,
                            ef_construction=ef_construction, seed=seed)
        if len(self.doc_ids):
            self._build_search()

    def __len__(self) -> int:
        return len(self.doc_ids)

    def _build_search(self) -> None:
        p = self._params
        if self.backend == "exact" and str(self.device).startswith("cuda"):
            import torch

            self._torch_vectors = torch.from_numpy(self.vectors).to(self.device)
            return
        self._ann = build_ann(self.vectors, self.backend, nlist=p["nlist"], nprobe=p["nprobe"], hnsw_m=p["hnsw_m"],
                              ef_search=p["ef_search"], ef_construction=p["ef_construction"], seed=p["seed"])

    def row_of(self, doc_id: str) -> int | None:
        return self._row_of.get(doc_id)

    def lookup(self, doc_ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings of `doc_ids`: float32 (n, dim) (zero rows for unknown ids) and a bool (n,) found mask."""
        rows = np.array([self._row_of.get(d, -1) for d in doc_ids], dtype=np.int64)
        found = rows >= 0
        out = np.zeros((len(doc_ids), self.dim), np.float32)
        out[found] = self.vectors[rows[found]]
        return out, found

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k by inner product. queries: (nq, dim) -> scores float32 (nq, k'), rows int64 (nq, k'), k' = min(k, n).

        Rows an ANN search could not fill are -1 with score -inf.
        """
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if queries.shape[1] != self.dim:
            raise InputError(f"query vectors have dimension {queries.shape[1]}, the index at {self.dir} holds {self.dim}")
        k = min(int(k), len(self.doc_ids))
        if k <= 0:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        if self._torch_vectors is not None:
            import torch

            with torch.inference_mode():
                q = torch.from_numpy(queries).to(self._torch_vectors.device)
                scores, rows = torch.topk(q @ self._torch_vectors.T, k, dim=1)  # (nq, k)
            return scores.float().cpu().numpy(), rows.cpu().numpy().astype(np.int64)
        if isinstance(self._ann, np.ndarray):  # numpy exact fallback
            return exact_search(self._ann, queries, k)
        if hasattr(self._ann, "hnsw"):  # HNSW returns at most efSearch results
            self._ann.hnsw.efSearch = max(self._params["ef_search"], k)
        scores, rows = self._ann.search(queries, k)
        scores[rows < 0] = -np.inf
        return scores.astype(np.float32), rows.astype(np.int64)


def exact_search(vectors: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force top-k inner product in numpy: (nq, dim) x (n, dim) -> scores, rows (nq, k), best first."""
    sims = queries @ vectors.T  # (nq, n)
    k = min(k, sims.shape[1])
    part = np.argpartition(-sims, k - 1, axis=1)[:, :k] if k < sims.shape[1] else np.tile(np.arange(k), (len(sims), 1))
    top = np.take_along_axis(sims, part, axis=1)
    order = np.argsort(-top, axis=1, kind="stable")
    return np.take_along_axis(top, order, 1).astype(np.float32), np.take_along_axis(part, order, 1).astype(np.int64)


def build_ann(vectors: np.ndarray, backend: str, *, nlist: int = 0, nprobe: int = 32, hnsw_m: int = 32,
              ef_search: int = 256, ef_construction: int = 200, seed: int = 0):
    """A FAISS index over `vectors` (inner product); for ``exact`` without FAISS, the array itself."""
    try:
        import faiss
    except ImportError:
        if backend == "exact":
            return vectors
        raise MissingDependencyError("faiss", "faiss-cpu", f"the {backend} vector index") from None
    n, dim = vectors.shape
    if backend == "exact":
        index = faiss.IndexFlatIP(dim)
    elif backend == "ivf":
        nlist = nlist or max(1, min(int(4 * np.sqrt(n)), n // 39 or 1))  # FAISS wants >= 39 points per cell
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = seed
        index.train(vectors)
        index.nprobe = min(nprobe, nlist)
    elif backend == "hnsw":
        index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = ef_construction
        index.hnsw.efSearch = ef_search
    else:
        raise InputError(f"unknown vector search backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    index.add(vectors)
    return index

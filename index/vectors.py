"""The vector index beside the inverted index: document embeddings for dense recall, with exact and
approximate (FAISS IVF / HNSW) inner-product search. Fed by `funnel embed` (`funnel.ranking.models.dual_encoder.embed_store`);
feeds `funnel.ranking.serving.recall.DenseRecall` and the funnel's dense-cosine feature (`VectorIndex.lookup`).

Vectors are L2-normalised, so inner product = cosine. Search backends:
- ``exact``: brute force; on a CUDA device a torch matmul + topk (faiss-gpu is not needed), on CPU
  FAISS ``IndexFlatIP`` (numpy matmul + argpartition when FAISS is missing);
- ``ivf``: FAISS ``IndexIVFFlat`` (inner product), ``nlist`` k-means cells, ``nprobe`` visited per query;
- ``hnsw``: FAISS ``IndexHNSWFlat`` (inner product), ``M`` links per node, ``efSearch`` at query time;
- ``auto``: exact below `ANN_MIN_VECTORS` vectors or on a GPU, else HNSW.
ANN structures are derived data, never the source of truth: the writer, given an `AnnSpec`, builds
the ANN index over the generation's live rows and saves it beside the vectors (``faiss.write_index``);
`VectorIndex` memory-maps that file at open (``faiss.read_index`` with ``IO_FLAG_MMAP_IFC``: the
vectors inside HNSW/IVF are mapped, not copied, so the page cache is shared by every server worker)
instead of building it again (a minute or two for 100k vectors, `benchmarks/results/ann.md`). An index
without a saved file, or whose file was built with other parameters, is built in memory at open as
before.

Files (folder ``HOME/index/dense/``, written by `VectorIndexWriter`):
- ``manifest.json``: ``{"format": 2, "generation": int, "dim": int, "metric": "ip", "count": int,
  "parts": [{"name": "part-000001", "count": int}], "meta": {...}, "ann": {...} | absent}``; ``meta``
  holds what the writer was told: the encoder (``model``, ``model_hash``, lengths) and ``last_seq``,
  the store sequence number up to which documents are embedded. Replaced atomically (write + rename):
  readers see the old or the new generation, never a half-written one.
- ``part-NNNNNN/vectors.npy``: float32 (count, dim) unit rows; ``part-NNNNNN/doc_ids.json``: list of
  count strings, row-aligned. Parts are append-only; a doc id present in several parts resolves to the
  newest part (an updated document re-embedded by an incremental add).
- ``ann-GGGGGG.faiss`` (format 2, optional): the FAISS index (``IndexHNSWFlat`` or ``IndexIVFFlat``, inner
  product) of generation GGGGGG's live rows in `VectorIndex` row order, written by ``faiss.write_index``;
  the manifest's ``ann`` says ``{"file", "backend", "count", "hnsw_m", "ef_construction"}`` (HNSW) or
  ``{"file", "backend", "count", "nlist", "seed"}`` (IVF). Query-time settings (efSearch, nprobe) are
  not in the file: the reader sets them. Format 1 folders (no ``ann``) still open, building the ANN.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from funnel.core.errors import FunnelError, InputError, MissingDependencyError
from funnel.index.segments import save_npy


log = logging.getLogger(__name__)

FORMAT = 2  # 2: optional saved ANN index (``ann``); format 1 folders open unchanged
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


@dataclass(frozen=True)
class AnnSpec:
    """Which ANN index to build, at write time (saved) or at open (in memory): ``recall.ann`` and its
    build parameters. ``backend`` "auto" means HNSW from `ANN_MIN_VECTORS` vectors, nothing below."""
    backend: str = "auto"
    nlist: int = 0  # IVF cells (0: 4 x sqrt(n))
    hnsw_m: int = 16
    ef_construction: int = 100
    seed: int = 0

    @classmethod
    def from_config(cls, recall_config) -> "AnnSpec":
        rc = recall_config
        return cls(rc.ann, nlist=rc.nlist, hnsw_m=rc.hnsw_m)

    def resolve(self, n: int) -> str:
        """The backend for `n` vectors on a CPU: "exact", "ivf" or "hnsw"."""
        if self.backend == "auto":
            return "exact" if n < ANN_MIN_VECTORS else "hnsw"
        return self.backend

    def matches(self, saved: dict, backend: str, n: int) -> bool:
        """Whether a saved ``ann`` manifest entry is the index this spec would build over n rows."""
        if saved.get("backend") != backend or saved.get("count") != n:
            return False
        if backend == "hnsw":
            return saved.get("hnsw_m") == self.hnsw_m and saved.get("ef_construction") == self.ef_construction
        return (not self.nlist or saved.get("nlist") == self.nlist) and saved.get("seed") == self.seed


def _live(index_dir: Path, manifest: dict) -> tuple[np.ndarray, list[str]]:
    """The generation's live rows (the newest of each doc id, in part order) and their doc ids.

    A single part without repeated ids stays the memory-mapped ``vectors.npy`` (no copy)."""
    vecs, ids = [], []
    for part in manifest["parts"]:
        folder = index_dir / part["name"]
        vecs.append(np.load(folder / "vectors.npy", mmap_mode="r"))
        ids.extend(json.loads((folder / "doc_ids.json").read_text(encoding="utf-8")))
    if not vecs:
        return np.zeros((0, manifest["dim"]), np.float32), ids
    last = {d: i for i, d in enumerate(ids)}  # newest row of each doc id
    if len(last) == len(ids):
        all_vecs = vecs[0] if len(vecs) == 1 else np.concatenate(vecs)
        return np.ascontiguousarray(all_vecs, dtype=np.float32), ids  # (n, dim)
    all_vecs = np.concatenate(vecs)
    rows = np.array(sorted(last.values()), dtype=np.int64)
    return np.ascontiguousarray(all_vecs[rows], dtype=np.float32), [ids[r] for r in rows]


class VectorIndexWriter:
    """Publishes vectors to an index folder: `replace` (a fresh generation) or `add` (a new part).

    Each call writes its part under a temporary name, renames it into place, then atomically
    replaces the manifest; a crash before the manifest swap leaves the previous generation intact
    (the orphan part is removed by the next write). With ``ann`` (an `AnnSpec`), each generation
    also gets its ANN index saved (``ann-GGGGGG.faiss``, rebuilt over all live rows on every write)
    when the spec resolves to HNSW or IVF for its size.
    """

    def __init__(self, index_dir: str | Path, ann: AnnSpec | None = None):
        self.dir = Path(index_dir)
        self.ann = ann

    def _write_ann(self, manifest: dict) -> dict:
        """`manifest` with its ``ann`` entry, the ANN file written (or without one: exact search)."""
        manifest = {k: v for k, v in manifest.items() if k != "ann"}
        if self.ann is None:
            return manifest
        backend = self.ann.resolve(manifest["count"])
        if backend not in ("hnsw", "ivf"):
            return manifest
        import faiss

        vectors, _ = _live(self.dir, manifest)
        spec = self.ann
        t0 = time.perf_counter()
        index = build_ann(vectors, backend, nlist=spec.nlist, hnsw_m=spec.hnsw_m,
                          ef_construction=spec.ef_construction, seed=spec.seed)
        name = f"ann-{manifest['generation']:06d}.faiss"
        tmp = self.dir / f".{name}.tmp"
        faiss.write_index(index, str(tmp))
        os.replace(tmp, self.dir / name)
        entry = {"file": name, "backend": backend, "count": int(index.ntotal)}
        if backend == "hnsw":
            entry.update(hnsw_m=spec.hnsw_m, ef_construction=spec.ef_construction)
        else:
            entry.update(nlist=int(index.nlist), seed=spec.seed)
        log.info("vector index %s: %s index of %d vectors built and saved in %.1fs", self.dir, backend,
                 index.ntotal, time.perf_counter() - t0)
        return {**manifest, "ann": entry}

    def _write_part(self, vectors: np.ndarray, doc_ids: list[str], number: int) -> dict:
        name = f"part-{number:06d}"
        tmp = self.dir / f".{name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        save_npy(tmp / "vectors.npy", vectors)  # np.save could publish a truncated file on a full disk
        (tmp / "doc_ids.json").write_text(json.dumps(doc_ids), encoding="utf-8")
        final = self.dir / name
        shutil.rmtree(final, ignore_errors=True)  # an orphan of an interrupted write
        os.replace(tmp, final)
        return {"name": name, "count": int(vectors.shape[0])}

    def _publish(self, manifest: dict) -> dict:
        manifest = self._write_ann(manifest)
        _write_json_atomic(self.dir / MANIFEST, manifest)
        live = {p["name"] for p in manifest["parts"]}
        ann = manifest.get("ann", {}).get("file")
        for child in self.dir.iterdir():  # parts and ANN files no generation refers to any more
            if child.is_dir() and child.name.startswith("part-") and child.name not in live:
                shutil.rmtree(child, ignore_errors=True)
            elif child.is_file() and child.name.startswith("ann-") and child.name != ann:
                child.unlink(missing_ok=True)  # a reader that mapped it keeps its pages until it closes
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
        self.vectors, self.doc_ids = _live(self.dir, manifest)  # (n, dim) float32, mapped when one part
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
        self.ann_source: str | None = None  # "saved" (mapped from the writer's file) or "built" (at open)
        if len(self.doc_ids):
            self._build_search()

    def __len__(self) -> int:
        return len(self.doc_ids)

    def _build_search(self) -> None:
        p = self._params
        if self.backend == "exact" and str(self.device).startswith("cuda"):
            import torch

            self._torch_vectors = torch.from_numpy(np.array(self.vectors)).to(self.device)
            return
        saved = self.manifest.get("ann")
        spec = AnnSpec(self.backend, nlist=p["nlist"], hnsw_m=p["hnsw_m"], ef_construction=p["ef_construction"],
                       seed=p["seed"])
        if saved and spec.matches(saved, self.backend, len(self.doc_ids)):
            self._ann = read_ann(self.dir / saved["file"])
            if self.backend == "ivf":
                self._ann.nprobe = min(p["nprobe"], self._ann.nlist)
            self.ann_source = "saved"
            return
        if saved and self.backend in ("hnsw", "ivf"):
            log.info("vector index %s: saved %s index does not match recall.ann=%s with these parameters: "
                     "building one in memory", self.dir, saved.get("backend"), self.backend)
        self.ann_source = "built"
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
        params = None
        if hasattr(self._ann, "hnsw"):  # HNSW returns at most efSearch results; per call, so threads share the index
            import faiss

            params = faiss.SearchParametersHNSW(efSearch=max(self._params["ef_search"], k))
        scores, rows = self._ann.search(queries, k, params=params)
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


def read_ann(path: Path):
    """A saved FAISS index, its vectors memory-mapped (``IO_FLAG_MMAP_IFC``, FAISS >= 1.10), else read."""
    import faiss

    flag = getattr(faiss, "IO_FLAG_MMAP_IFC", None)
    if flag is not None:
        try:
            return faiss.read_index(str(path), flag | faiss.IO_FLAG_READ_ONLY)
        except RuntimeError as exc:  # a FAISS build or index type without mmap support
            log.info("%s: memory-mapped read refused (%s); reading it into memory", path, exc)
    return faiss.read_index(str(path), faiss.IO_FLAG_READ_ONLY)


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

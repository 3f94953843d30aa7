"""Vector index: round trip, exact search vs brute force, incremental add, atomic publish, ANN recall."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from funnel.core.errors import FunnelError, InputError
from funnel.index.vectors import VectorIndex, VectorIndexWriter, build_ann, exact_search, read_manifest


def unit(rng, n, dim=16):
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def brute_top(vectors, q, k):
    sims = vectors @ q
    return np.argsort(-sims, kind="stable")[:k], np.sort(sims)[::-1][:k]


def test_round_trip_and_exact_search(tmp_path):
    rng = np.random.default_rng(0)
    vecs, ids = unit(rng, 300), [f"d{i}" for i in range(300)]
    manifest = VectorIndexWriter(tmp_path / "dense").replace(vecs, ids, {"model": "test"})
    assert manifest["count"] == 300 and manifest["dim"] == 16 and manifest["generation"] == 1
    vi = VectorIndex(tmp_path / "dense", backend="exact")
    assert vi.doc_ids == ids and vi.meta["model"] == "test"
    np.testing.assert_array_equal(vi.vectors, vecs)
    queries = unit(rng, 5)
    scores, rows = vi.search(queries, 20)
    for q, s, r in zip(queries, scores, rows):
        want_rows, want_scores = brute_top(vecs, q, 20)
        np.testing.assert_array_equal(r, want_rows)
        np.testing.assert_allclose(s, want_scores, rtol=1e-5, atol=1e-6)
    got, found = vi.lookup(["d7", "nope", "d0"])
    assert found.tolist() == [True, False, True]
    np.testing.assert_array_equal(got[0], vecs[7])
    assert not got[1].any()
    # the numpy fallback agrees with FAISS
    s2, r2 = exact_search(vecs, queries, 20)
    np.testing.assert_array_equal(r2, rows)


def test_k_larger_than_index(tmp_path):
    rng = np.random.default_rng(1)
    VectorIndexWriter(tmp_path).replace(unit(rng, 3), ["a", "b", "c"])
    scores, rows = VectorIndex(tmp_path).search(unit(rng, 1), 10)
    assert rows.shape == (1, 3) and sorted(rows[0].tolist()) == [0, 1, 2]


def test_incremental_add_and_newest_row_wins(tmp_path):
    rng = np.random.default_rng(2)
    w = VectorIndexWriter(tmp_path)
    first = unit(rng, 50)
    w.replace(first, [f"d{i}" for i in range(50)], {"last_seq": 50})
    extra = unit(rng, 10)
    m = w.add(extra, [f"n{i}" for i in range(9)] + ["d3"], {"last_seq": 60})
    assert m["generation"] == 2 and len(m["parts"]) == 2 and m["meta"]["last_seq"] == 60
    vi = VectorIndex(tmp_path)
    assert len(vi) == 59  # d3 counted once
    got, _ = vi.lookup(["d3", "n0", "d4"])
    np.testing.assert_array_equal(got[0], extra[9])  # the re-embedded d3
    np.testing.assert_array_equal(got[1], extra[0])
    np.testing.assert_array_equal(got[2], first[4])
    # a query equal to the new d3 vector finds d3 first, and the old d3 row is gone
    _, rows = vi.search(extra[9][None], 3)
    assert vi.doc_ids[rows[0][0]] == "d3" and sum(vi.doc_ids[r] == "d3" for r in rows[0]) == 1
    with pytest.raises(InputError, match="dimension"):
        w.add(unit(rng, 2, dim=8), ["x", "y"])
    with pytest.raises(InputError, match="NaN"):
        w.add(np.full((1, 16), np.nan, np.float32), ["z"])
    assert read_manifest(tmp_path)["generation"] == 2  # failed adds published nothing


def test_missing_index_is_an_error(tmp_path):
    with pytest.raises(FunnelError, match="funnel embed"):
        VectorIndex(tmp_path / "none")
    VectorIndexWriter(tmp_path / "x").replace(np.eye(4, dtype=np.float32), list("abcd"))
    with pytest.raises(InputError, match="backend"):
        VectorIndex(tmp_path / "x", backend="annoy")


def test_orphan_part_of_a_crashed_write_is_ignored_then_removed(tmp_path):
    rng = np.random.default_rng(3)
    w = VectorIndexWriter(tmp_path)
    w.replace(unit(rng, 20), [f"d{i}" for i in range(20)])
    # a writer that died after writing its part but before the manifest swap
    (tmp_path / ".part-000002.tmp").mkdir()
    (tmp_path / "part-000002").mkdir()
    np.save(tmp_path / "part-000002" / "vectors.npy", unit(rng, 5))
    vi = VectorIndex(tmp_path)
    assert len(vi) == 20 and read_manifest(tmp_path)["generation"] == 1
    w.add(unit(rng, 5), [f"e{i}" for i in range(5)])
    assert len(VectorIndex(tmp_path)) == 25
    assert not (tmp_path / ".part-000002.tmp").exists()


WRITER = textwrap.dedent("""
    import sys, numpy as np
    from funnel.index.vectors import VectorIndexWriter
    w = VectorIndexWriter(sys.argv[1])
    rng = np.random.default_rng(0)
    i = 0
    while True:
        v = rng.standard_normal((200, 16)).astype(np.float32)
        w.add(v / np.linalg.norm(v, axis=1, keepdims=True), [f"g{i}-{j}" for j in range(200)], {"step": i})
        i += 1
        if i == 2:
            print("ready", flush=True)
""")


def test_readers_never_see_a_half_published_generation_even_with_kill_9(tmp_path):
    """A writer adding parts in a loop is killed with SIGKILL; every snapshot read meanwhile and after is whole."""
    rng = np.random.default_rng(4)
    VectorIndexWriter(tmp_path).replace(unit(rng, 10), [f"d{i}" for i in range(10)])
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], cwd=root, stdout=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": root})
    try:
        assert proc.stdout.readline().strip() == b"ready"
        deadline = time.time() + 2.0
        reads = 0
        while time.time() < deadline:
            try:
                vi = VectorIndex(tmp_path, backend="exact")
            except FileNotFoundError:
                continue  # a part removed by the writer between our manifest read and its load: retry
            m = vi.manifest
            assert len(vi) == m["count"] == 10 + 200 * (len(m["parts"]) - 1)
            assert vi.vectors.shape == (len(vi), 16)
            reads += 1
        assert reads > 0
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    vi = VectorIndex(tmp_path)
    assert len(vi) == vi.manifest["count"]
    json.loads((tmp_path / "manifest.json").read_text())  # never truncated


@pytest.mark.parametrize("backend", ["ivf", "hnsw"])
def test_ann_recall_against_exact(backend):
    rng = np.random.default_rng(5)
    centers = unit(rng, 20, 32)
    vecs = centers[rng.integers(0, 20, 4000)] + 0.3 * rng.standard_normal((4000, 32)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    queries = vecs[rng.choice(4000, 50, replace=False)] + 0.05 * rng.standard_normal((50, 32)).astype(np.float32)
    _, exact = exact_search(vecs, queries.astype(np.float32), 10)
    ann = build_ann(vecs, backend, nprobe=16, ef_search=64)
    _, got = ann.search(queries.astype(np.float32), 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact, got)])
    assert recall >= 0.9


@pytest.mark.parametrize("backend", ["hnsw", "ivf"])
def test_saved_ann_is_mapped_at_open_and_answers_like_a_fresh_build(tmp_path, monkeypatch, request, backend):
    import faiss

    from funnel.index import vectors as vectors_mod
    from funnel.index.vectors import AnnSpec

    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)  # a multi-threaded HNSW build links nodes in a racy order
    request.addfinalizer(lambda: faiss.omp_set_num_threads(threads))
    rng = np.random.default_rng(6)
    vecs, ids = unit(rng, 2000, 32), [f"d{i}" for i in range(2000)]
    spec = AnnSpec(backend, nlist=16, hnsw_m=8, ef_construction=40)
    manifest = VectorIndexWriter(tmp_path, ann=spec).replace(vecs, ids)
    assert manifest["format"] == 2 and manifest["ann"]["backend"] == backend
    assert (tmp_path / manifest["ann"]["file"]).exists()
    kw = dict(backend=backend, nlist=16, nprobe=4, hnsw_m=8, ef_construction=40, ef_search=32)
    fresh = VectorIndex(tmp_path, **dict(kw, hnsw_m=9 if backend == "hnsw" else 8,
                                          nlist=17 if backend == "ivf" else 16))  # other parameters: built
    assert fresh.ann_source == "built"

    def no_build(*a, **k):
        raise AssertionError("open rebuilt the ANN index instead of reading the saved one")

    built_now = build_ann(vecs, backend, nlist=16, nprobe=4, hnsw_m=8, ef_search=32, ef_construction=40)
    monkeypatch.setattr(vectors_mod, "build_ann", no_build)
    saved = VectorIndex(tmp_path, **kw)
    assert saved.ann_source == "saved"
    queries = unit(rng, 20, 32)
    s_saved, r_saved = saved.search(queries, 10)
    s_built, r_built = built_now.search(queries, 10)  # the same build, in memory (HNSW/IVF are deterministic here)
    np.testing.assert_array_equal(r_saved, r_built)
    np.testing.assert_allclose(s_saved, s_built, rtol=1e-6)


def test_ann_file_follows_the_generation_and_format_1_still_opens(tmp_path):
    from funnel.index.vectors import AnnSpec

    rng = np.random.default_rng(7)
    w = VectorIndexWriter(tmp_path, ann=AnnSpec("hnsw", hnsw_m=8, ef_construction=40))
    first = w.replace(unit(rng, 500), [f"d{i}" for i in range(500)])
    second = w.add(unit(rng, 10), [f"d{i}" for i in range(495, 505)])  # 5 replaced, 5 new
    assert second["ann"]["count"] == 505 and second["ann"]["file"] != first["ann"]["file"]
    assert not (tmp_path / first["ann"]["file"]).exists()
    vi = VectorIndex(tmp_path, backend="hnsw", hnsw_m=8, ef_construction=40)
    assert vi.ann_source == "saved" and len(vi) == 505
    _, rows = vi.search(vi.vectors[[0, 499, 504]], 1)
    assert rows[:, 0].tolist() == [0, 499, 504]
    # a format-1 folder (no saved ANN) opens and builds as before
    old = dict(second, format=1)
    old.pop("ann")
    (tmp_path / "manifest.json").write_text(json.dumps(old))
    vi = VectorIndex(tmp_path, backend="hnsw", hnsw_m=8, ef_construction=40)
    assert vi.ann_source == "built" and len(vi) == 505
    # auto below ANN_MIN_VECTORS saves nothing: exact search needs no structure
    manifest = VectorIndexWriter(tmp_path / "small", ann=AnnSpec()).replace(unit(rng, 50), [f"s{i}" for i in range(50)])
    assert "ann" not in manifest

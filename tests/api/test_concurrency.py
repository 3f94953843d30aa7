"""SearchService shared by many threads: the whole funnel (hybrid recall with a dense query encoder,
LightGBM coarse, cross-encoder fine, re-rank) answers N concurrent requests exactly as the old server,
one request at a time under a lock with no micro-batching, answers them in sequence."""
from __future__ import annotations

import json
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from funnel.core.config import load_config
from funnel.core.judgements import read_queries


@pytest.fixture(scope="module")
def full_home(tiny_home, tiny_dir, tmp_path_factory):
    """The tiny home with every model `funnel build` trains: dual encoder + vector index, coarse, cross-encoder."""
    from funnel.ranking.models.dual_encoder import build_dual_encoder, embed_store, save_dual_encoder
    from funnel.ranking.training.train_coarse import train_coarse
    from funnel.ranking.training.train_cross import train_cross_encoder

    home = tmp_path_factory.mktemp("full") / "home"
    shutil.copytree(tiny_home, home)
    config = _config(home, "pipeline.batch_wait_ms=0")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        save_dual_encoder(build_dual_encoder("tiny", query_max_len=32, doc_max_len=64), home / "models" / "dual-encoder")
        embed_store(config, progress=False)
        train_coarse(config, tiny_dir, progress=False)
        train_cross_encoder(config, tiny_dir, device="cpu", progress=False)
    finally:
        torch.set_num_threads(threads)
    return home


def _config(home, *sets):
    return load_config(None, [f"paths.home={json.dumps(str(home))}", "coarse.train_depth=30", "coarse.n_estimators=30",
                              "coarse.min_child_samples=5", 'fine.backbone="tiny"', "fine.max_length=64",
                              "fine.group_size=3", "fine.negatives_depth=10", "fine.epochs=1",
                              "pipeline.recall_k=40", "pipeline.coarse_k=15", "pipeline.cpu_fine_k=8", *sets])


def test_concurrent_requests_get_exactly_the_sequential_results(full_home, tiny_dir, one_thread):
    from funnel.api.service import SearchService

    queries = sorted(read_queries(tiny_dir).values())[:12] * 3
    old = SearchService.open(_config(full_home, "serve.pipeline_lock=true", "pipeline.batch_wait_ms=0"))
    assert old.stage_names() == ["hybrid", "coarse", "fine", "rerank"]
    want = [old.search(q, 10, explain=True) for q in queries]
    old.close()

    new = SearchService.open(_config(full_home, "pipeline.batch_wait_ms=20"))
    in_fine = []  # how many requests were inside the pipeline at once
    pipeline = new.pipeline()
    barrier = threading.Barrier(12)

    def search(q):
        in_fine.append(pipeline.running())
        return new.search(q, 10, explain=True)

    with ThreadPoolExecutor(12) as pool:
        got = list(pool.map(lambda q: (barrier.wait(), search(q))[1], queries))
    for w, g in zip(want, got):
        assert [h.doc_id for h in g.hits] == [h.doc_id for h in w.hits]
        np.testing.assert_allclose([h.score for h in g.hits], [h.score for h in w.hits], rtol=1e-5, atol=1e-5)
        for sw, sg in zip(w.stages, g.stages):  # every stage's list, not only the final one
            assert [r.doc_id for r in sg.rows] == [r.doc_id for r in sw.rows], sw.stage
    batchers = {type(b).__name__: b.batcher for b in pipeline.batchers}
    assert set(batchers) == {"BatchedCrossEncoder", "BatchedQueryEncoder"}
    assert all(b.calls < b.items for b in batchers.values())  # requests did share forward passes
    assert max(in_fine) > 1
    new.close()


def test_exclusive_waits_for_running_requests():
    from funnel.api.service import SharedLock

    lock = SharedLock()
    events = []

    def alone():
        with lock.exclusive():
            events.append("exclusive")

    with lock.shared(), lock.shared():  # requests hold it together
        t = threading.Thread(target=alone)
        t.start()
        t.join(0.2)
        assert events == []  # the exclusive holder waits until they end
    t.join(5)
    assert events == ["exclusive"]
    with lock.shared():
        pass


def test_a_new_vector_index_generation_is_served_without_a_restart(full_home, tmp_path):
    from funnel.api.service import SearchService
    from funnel.index.vectors import VectorIndex, VectorIndexWriter

    home = tmp_path / "home"
    shutil.copytree(full_home, home)
    service = SearchService.open(_config(home, "serve.reload_check_s=0", 'pipeline.stages="recall"'))
    try:
        before = service._loaded.dense_generation
        assert before is not None and service.index_generation() is not None
        old = VectorIndex(home / "index" / "dense")
        moved = old.vectors[[1]]  # doc 0 re-embedded as doc 1's vector: the same doc 1 query now finds both
        VectorIndexWriter(home / "index" / "dense").add(moved, [old.doc_ids[0]], {})
        service.check_for_new_index(wait=True)
        assert service.reloads == 1 and service._loaded.dense_generation == before + 1
        vectors = service.pipeline().stages[0][0].dense.vectors
        np.testing.assert_array_equal(vectors.lookup([old.doc_ids[0]])[0], moved)
    finally:
        service.close()

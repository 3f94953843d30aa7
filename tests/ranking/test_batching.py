"""funnel.ranking.serving.batching: the micro-batcher (a lone caller never waits, concurrent callers
share one call, errors reach every caller) and the batched cross-encoder / query encoder, which must
score exactly what the unbatched models score (to float rounding) when called from many threads."""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from funnel.ranking.serving.batching import BatchedCrossEncoder, BatchedQueryEncoder, MicroBatcher


def run_together(fn, args, threads):
    """fn(arg) for every arg, `threads` at a time, started together."""
    barrier = threading.Barrier(threads)

    def call(a):
        barrier.wait() if len(args) >= threads else None
        return fn(a)

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(call, args))


def test_a_lone_caller_does_not_wait_for_the_budget():
    calls = []
    batcher = MicroBatcher(lambda items: calls.append(len(items)) or [i * 2 for i in items], wait_ms=500,
                           active=lambda: 1)
    t0 = time.perf_counter()
    assert [batcher(i) for i in range(5)] == [0, 2, 4, 6, 8]
    assert time.perf_counter() - t0 < 0.4 and calls == [1] * 5
    batcher.close()


def test_concurrent_callers_share_calls_and_each_gets_its_own_result():
    calls = []

    def fn(items):
        calls.append(len(items))
        time.sleep(0.01)
        return [i * i for i in items]

    batcher = MicroBatcher(fn, wait_ms=50, active=lambda: 8, max_items=8)
    got = run_together(batcher, list(range(32)), threads=8)
    assert got == [i * i for i in range(32)]
    assert sum(calls) == 32 and len(calls) < 32 and max(calls) <= 8
    batcher.close()


def test_a_failing_call_raises_in_every_caller_and_the_batcher_goes_on():
    def fn(items):
        if "bad" in items:
            raise ValueError("bad item")
        return items

    batcher = MicroBatcher(fn, wait_ms=20, active=lambda: 2)
    with pytest.raises(ValueError):
        batcher("bad")
    assert batcher("good") == "good"
    batcher.close()


def test_batching_off_calls_through():
    batcher = MicroBatcher(lambda items: [threading.current_thread().name for _ in items], wait_ms=0)
    assert batcher(1) == threading.current_thread().name


QUERIES = ["alpha helix protein folding", "vitamin d deficiency", "gene expression in cancer cells",
           "mitochondria", "statins and heart disease risk in older adults", "insulin resistance"]
DOCS = ["Proteins fold into alpha helices and beta sheets.", "Vitamin D levels were measured in 300 patients.",
        "Tumour cells express oncogenes at high levels when the pathway is active.", "short",
        "Mitochondrial DNA is inherited from the mother in most animals, including humans and mice.",
        "Statin therapy lowered LDL cholesterol.", "Insulin signalling in muscle and liver tissue."]


@pytest.fixture(scope="module")
def cross_encoder():
    from funnel.ranking.models.cross_encoder import load_cross_encoder

    return load_cross_encoder("tiny", "cpu", max_length=64)


def test_batched_cross_encoder_scores_what_the_unbatched_one_scores(cross_encoder, one_thread):
    rng = np.random.default_rng(0)
    requests = [(QUERIES[i % len(QUERIES)], [DOCS[j] for j in rng.choice(len(DOCS), 1 + i % 4, replace=False)])
                for i in range(24)]
    want = [cross_encoder.score(q, docs) for q, docs in requests]
    batched = BatchedCrossEncoder(cross_encoder, wait_ms=20, active=lambda: 8, batch_size=32)
    got = run_together(lambda r: batched.score(*r), requests, threads=8)
    for w, g in zip(want, got):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)
    assert batched.batcher.calls < len(requests)  # requests did share forward passes
    assert batched.max_length == cross_encoder.max_length  # the wrapped encoder's attributes show through
    batched.close()


def test_batched_query_encoder_encodes_what_the_unbatched_one_encodes(one_thread):
    from funnel.ranking.models.dual_encoder import build_dual_encoder

    encoder = build_dual_encoder("tiny", query_max_len=32, doc_max_len=64)
    encoder.eval()
    want = [encoder.encode_queries([q]) for q in QUERIES * 3]
    batched = BatchedQueryEncoder(encoder, wait_ms=20, active=lambda: 6)
    got = run_together(lambda q: batched.encode_queries([q]), QUERIES * 3, threads=6)
    for w, g in zip(want, got):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)
    assert batched.batcher.calls < len(QUERIES) * 3
    batched.close()


def test_cpu_gate_admits_n_and_a_waiting_caller_gives_its_place_up():
    from funnel.ranking.serving.batching import CpuGate

    gate = CpuGate(1)
    inside, peak = [0], [0]
    batcher = MicroBatcher(lambda items: [time.sleep(0.02) or i for i in items], wait_ms=5, active=lambda: 4, gate=gate)

    def request(i):
        with gate.hold():
            inside[0] += 1
            peak[0] = max(peak[0], inside[0])
            time.sleep(0.005)
            inside[0] -= 1
            return batcher(i)  # waits for the batch without its place: the others get in meanwhile

    assert run_together(request, list(range(8)), threads=4) == list(range(8))
    assert peak[0] == 1 and batcher.calls < 8
    batcher.close()

"""The recommendation stages in search's shape (`rank(request, candidates, k)`, looped by `run_stages`) give
exactly the batched funnel's (`funnel.recommend`) lists and scores at every stage."""
from dataclasses import replace

import numpy as np
import pytest
import torch

from funnel.core.errors import InputError
from funnel.ranking.rec.build import fit_funnel
from funnel.ranking.rec.funnel import Batch, recommend
from funnel.ranking.rec.stages import rec_stages
from funnel.ranking.serving.stages import Candidates, Request, StageTrace, run_stages
from tests.ranking.rec.test_service import RECIPE


@pytest.fixture(scope="module")
def served(synthetic_ds):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        funnel = fit_funnel(synthetic_ds, RECIPE).funnel(synthetic_ds, "all")
    finally:
        torch.set_num_threads(before)
    return funnel, rec_stages(funnel, synthetic_ds)


def batched(funnel, ds, seq, ts, user, now, k):
    """`recommend` on a batch of one user, rerank cut to k."""
    funnel = replace(funnel, config=replace(funnel.config, rerank=replace(funnel.config.rerank, k=k)))
    return recommend(funnel, Batch([seq], [ts], np.array([user], np.int64), np.array([now], np.int64)), trace=True)


def assert_same(out, result: Candidates, ds):
    assert [t.stage for t in result.trace] == list(out.stages) == ["recall", "coarse", "fine", "rerank"]
    for t in result.trace:
        c = out.stages[t.stage]
        keep = c.items[0] > 0
        assert t.doc_ids == [str(ds.item_ids[i]) for i in c.items[0][keep]], t.stage
        np.testing.assert_array_equal(t.scores, c.scores[0][keep], err_msg=t.stage)
        assert t.ms >= 0
    final = out.stages["rerank"].items[0]
    np.testing.assert_array_equal(result.ords, final[final > 0])
    assert result.doc_ids == result.trace[-1].doc_ids
    assert result.trace[-1].detail == out.traces[0]


@pytest.mark.parametrize("user", ["1", "2", "7", "30", "60"])
@pytest.mark.parametrize("k", [5, 3])
def test_known_users(served, synthetic_ds, user, k):
    funnel, stages = served
    ds = synthetic_ds
    u = list(ds.user_ids).index(user)
    seq, ts = ds.sequences[u], ds.timestamps[u]
    now = int(ts[-1]) + 1
    result = run_stages(stages, Request(history=ds.item_ids[seq].tolist(), k=k, user=user, history_ts=ts, now=now))
    assert_same(batched(funnel, ds, seq, ts, u, now, k), result, ds)
    assert len(result) == k


def test_cold_start(served, synthetic_ds):
    funnel, stages = served
    ds, now = synthetic_ds, 2_000_000
    ids = ["5", "6", "7"]
    seq = np.array([ds.item_index()[i] for i in ids], np.int64)
    ts = np.full(3, now, np.int64)
    want = batched(funnel, ds, seq, ts, -1, now, 5)
    for user in (None, "someone-new"):  # an id the log does not know reads as unknown features
        assert_same(want, run_stages(stages, Request(history=ids, k=5, user=user, history_ts=ts, now=now)), ds)
    # without timestamps every history item counts as seen at `now`
    assert_same(want, run_stages(stages, Request(history=ids, k=5, now=now)), ds)


def test_stage_shape(served):
    _, stages = served
    assert [(s.name, k) for s, k in stages] == [("recall", 20), ("coarse", 10), ("fine", 10), ("rerank", 5)]
    recall = stages[0][0].rank(Request(history=["5", "6"], now=2_000_000), Candidates.empty(), 8)
    assert len(recall) == 8 and recall.ords.dtype == np.int64 and not {"5", "6"} & set(recall.doc_ids)
    assert isinstance(recall.trace[0], StageTrace) and recall.trace[0].stage == "recall"
    # what coarse reads travels as named per-candidate features, under the coarse columns' names
    assert set(recall.features) == {f"{c}_{r}" for c in ("route", "rank") for r in ("two_tower", "ease", "itemknn",
                                                                                     "popularity")}
    coarse = stages[1][0].rank(Request(history=["5", "6"], now=2_000_000), recall, 4)
    assert len(coarse) == 4 and "log_pop" in coarse.features and coarse.features["log_pop"].shape == (4,)
    assert [t.stage for t in coarse.trace] == ["recall", "coarse"] and len(recall.trace) == 1


@pytest.mark.parametrize("request_, match", [
    (Request(history=["5"]), "needs a history"),
    (Request(now=1), "needs a history"),
    (Request(history=["5", "nope"], now=1), "unknown item id 'nope'"),
    (Request(history=["5", "6"], history_ts=[1], now=1), "expected 2 timestamps"),
])
def test_bad_requests(served, request_, match):
    with pytest.raises(InputError, match=match):
        run_stages(served[1], request_)

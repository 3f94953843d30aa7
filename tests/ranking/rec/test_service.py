"""`RecService` over a home holding the synthetic log (store) and a tiny funnel fitted on it."""
import threading

import numpy as np
import pytest

from funnel.core.config import load_config
from funnel.core.errors import InputError
from funnel.core.store import DocumentStore
from funnel.ranking.rec.build import FunnelRecipe
from funnel.ranking.rec.funnel import FunnelConfig
from funnel.ranking.rec.rerank import RerankConfig
from funnel.ranking.rec.service import RecService
from funnel.ranking.rec.store_log import item_document
from funnel.ranking.rec.two_tower import TwoTower

RECIPE = FunnelRecipe(
    train_targets=2, threads=1, device="cpu", ease_grid=(100.0,), itemknn_grid=((20, 0.0),),
    route_weight_grid=({},),
    sasrec=dict(max_len=20, dim=16, n_layers=1, batch_size=32, max_epochs=4, eval_every=2),
    two_tower=dict(dim=16, max_len=10, batch_size=128, max_epochs=3),
    funnel=FunnelConfig(recall_k=20, coarse_k=10, rerank=RerankConfig(k=5)))


def write_log(store: DocumentStore, log) -> None:
    inter, items, users = log
    docs = [item_document(i, t, int(y), g) for i, t, y, g in zip(items["item_id"], items["title"], items["year"],
                                                                  items["genres"])]
    store.write_interactions("movielens", zip(inter["user_id"], inter["item_id"], inter["ts"], inter["rating"]),
                             [(u, {"age": int(a), "gender": g, "occupation": o})
                              for u, a, g, o in zip(users["user_id"], users["age"], users["gender"], users["occupation"])],
                             docs)


@pytest.fixture(scope="module")
def home(tmp_path_factory, synthetic_log):
    from tests.rec_home import build_rec_home

    home = build_rec_home(tmp_path_factory.mktemp("rechome"), synthetic_log)
    return load_config(home=home, overrides=["rec.max_k=10", "rec.default_k=5"])


@pytest.fixture(scope="module")
def service(home):
    return RecService.load(home)


def test_known_user(service):
    out = service.recommend("1", k=5)
    assert out["user"] == "1" and out["k"] == 5 and len(out["items"]) == 5
    seen = {h["item_id"] for h in service.history("1")}
    assert not seen & {r["item_id"] for r in out["items"]}
    assert [r["rank"] for r in out["items"]] == [1, 2, 3, 4, 5]
    assert set(out["ms"]) == {"recall", "coarse", "fine", "rerank"} and "stages" not in out
    row = out["items"][0]
    assert row["title"].startswith("Film ") and row["genres"] and isinstance(row["score"], float)


def test_explain(service):
    out = service.recommend("2", k=3, explain=True)
    assert list(out["stages"]) == ["recall", "coarse", "fine", "rerank"]
    assert out["stages"]["rerank"] == [r["item_id"] for r in out["items"]]
    assert set(out["stages"]["rerank"]) <= set(out["stages"]["fine"])
    assert out["trace"] and all("rule" in t for t in out["trace"])


def test_history_and_items(service, synthetic_log):
    inter = synthetic_log[0]
    h = service.history("3")
    assert len(h) == (inter["user_id"] == "3").sum()
    assert [r["ts"] for r in h] == sorted(r["ts"] for r in h)  # newest last
    assert service.history("3", limit=2) == h[-2:]
    assert service.item("1")["title"].startswith("Film 1 ") and service.item("nope") is None
    assert service.known_user("3") and not service.known_user("nobody")


def test_cold_start(service):
    out = service.recommend(history=["5", "6", "7"], k=5)
    ids = [r["item_id"] for r in out["items"]]
    assert len(ids) == 5 and not {"5", "6", "7"} & set(ids) and out["user"] is None
    # an unknown user with a history is served the same way; the walk goes on from item 7
    same = service.recommend(user="someone-new", history=["5", "6", "7"], k=5)
    assert [r["item_id"] for r in same["items"]] == ids


def test_two_tower_unknown_features(synthetic_ds):
    model = TwoTower.from_dataset(synthetic_ds, device="cpu", dim=8, max_len=5)
    hist = [np.array([1, 2, 3])]
    cold = model.score(hist, np.array([-1]))
    assert cold.shape == (1, synthetic_ds.n_items + 1) and np.isfinite(cold).all()
    np.testing.assert_allclose(cold, model.score(hist, None))  # -1 reads as unknown features


@pytest.mark.parametrize("kwargs, match", [
    (dict(user="nobody"), "unknown user 'nobody'"),
    (dict(), "give a user id or a history"),
    (dict(history=[]), "non-empty list"),
    (dict(history=["1", "zz", "yy"]), r"unknown item ids \['zz', 'yy'\]"),
    (dict(user="1", k=0), r"1\.\.10"),
    (dict(user="1", k=11), r"1\.\.10"),
])
def test_validation(service, kwargs, match):
    with pytest.raises(InputError, match=match):
        service.recommend(**kwargs)


def test_concurrent_calls(service):
    want = {u: service.recommend(u, k=5)["items"] for u in ("1", "2", "3", "4")}
    got, errors = {}, []

    def call(u):
        try:
            got[u] = service.recommend(u, k=5)["items"]
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)
    threads = [threading.Thread(target=call, args=(u,)) for u in want for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and got == want


def test_rerank_overrides(home):
    from dataclasses import replace

    svc = RecService.load(replace(home, rec=replace(home.rec, blocked="1,2", pinned="40:0", max_per_genre=2)))
    out = svc.recommend(history=["38", "39"], k=5, explain=True)
    ids = [r["item_id"] for r in out["items"]]
    assert ids[0] == "40" and not {"1", "2"} & set(ids)
    assert any(t["rule"] == "pinned" for t in out["trace"])
    with pytest.raises(InputError, match="rec.blocked"):
        RecService.load(replace(home, rec=replace(home.rec, blocked="nope")))


def test_missing_pieces(tmp_path, home):
    from dataclasses import replace

    empty = load_config(home=tmp_path)
    with pytest.raises(InputError, match="funnel ingest movielens"):
        RecService.load(empty)
    other = replace(home, paths=replace(home.paths, home=str(tmp_path / "other")))
    with DocumentStore(other.paths.store) as store:
        store.write_interactions("movielens", [("u", "1", 1, None), ("u", "2", 2, None)])
    with pytest.raises(InputError, match="funnel build --task rec"):
        RecService.load(other)


@pytest.mark.parametrize("user, history", [("1", None), ("4", None), (None, ["5", "6", "7"]), ("2", ["38", "39"])])
def test_same_answer_as_the_batched_funnel(service, user, history):
    """The service runs the search-shaped stages (`rec.stages`); its answer is the batched `recommend`'s."""
    from dataclasses import replace

    from funnel.ranking.rec.funnel import Batch, recommend

    ds, k = service.ds, 4
    if history is None:
        u = service._users[user]
        seq, ts, now = ds.sequences[u], ds.timestamps[u], int(ds.timestamps[u][-1]) + 1
    else:
        u = service._users[user] if user is not None else -1  # a known user keeps their features
        seq, now = np.array([service._items[i] for i in history], np.int64), service.now
        ts = np.full(len(seq), now, np.int64)
    cfg = service.funnel_config
    funnel = replace(service._funnel, config=replace(cfg, rerank=replace(cfg.rerank, k=k)))
    out = recommend(funnel, Batch([seq], [ts], np.array([u]), np.array([now])), trace=True)
    got = service.recommend(user, history, k=k, explain=True)
    ids, fine = ds.item_ids, out.stages["fine"]
    assert got["stages"] == {name: [str(ids[i]) for i in c.items[0] if i > 0] for name, c in out.stages.items()}
    score_of = {int(i): float(s) for i, s in zip(fine.items[0], fine.scores[0])}
    assert [(r["item_id"], r["score"]) for r in got["items"]] == [
        (str(ids[i]), score_of.get(int(i))) for i in out.stages["rerank"].items[0] if i > 0]
    assert got["trace"] == service._trace(out.traces[0], fine.items[0], seq)
    assert list(got["ms"]) == list(out.ms)

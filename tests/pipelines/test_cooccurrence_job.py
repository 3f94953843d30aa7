"""The Spark co-occurrence job against the local counts (`funnel.ranking.rec.cooccurrence`), exactly.

Two small logs: all-numeric ids (the split orders them as numbers) and mixed ids (as strings), each
with equal timestamps at the holdout boundary between items "9" and "10" (whose order differs between
the two), repeated user-item pairs, a user with one interaction and one with two."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from funnel.cli.main import main
from funnel.core.errors import InputError
from funnel.ranking.rec.baselines import ItemKNN
from funnel.ranking.rec.cooccurrence import cooccurrence_counts, drop_last, load_cooccurrence
from funnel.ranking.rec.split import build_dataset, known_sequences

pytestmark = pytest.mark.spark


def make_log(item_ids: list[str], seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(1, 31):
        n = int(rng.integers(3, 12))
        ts = rng.integers(0, 5, n).cumsum() + 1000  # steps of 0: equal timestamps
        for t, i in zip(ts, rng.choice(item_ids, n)):  # with replacement: repeated items
            rows.append((f"{u}", str(i), int(t)))
    # the last two interactions of user 1 tie at ts 9000 and the one before them at 8000: the split keeps
    # the first of "9" / "10" in its order, which holdout 2 must keep too
    rows += [("1", "9", 8000), ("1", "10", 8000), ("1", item_ids[0], 9000)]
    rows += [("lonely", item_ids[1], 5), ("pair", item_ids[2], 5), ("pair", item_ids[3], 5)]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "ts"])


NUMERIC = [str(i) for i in range(1, 26)]
MIXED = [f"{c}{i}" for c in "ab" for i in range(1, 11)] + ["9", "10", "100", "02"]


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    root = tmp_path_factory.mktemp("cooc")
    out = {}
    for name, ids, seed in (("numeric", NUMERIC, 1), ("mixed", MIXED, 2)):
        df = make_log(ids, seed)
        table = pa.Table.from_pandas(df.assign(value=1.0, dataset="ml"), preserve_index=False)
        pq.write_table(table, root / f"{name}.parquet")
        out[name] = (root / f"{name}.parquet", df, build_dataset(df))
    return out


def _assert_equal(got, want):
    assert (got.pairs != want.pairs).nnz == 0 and got.pairs.nnz == want.pairs.nnz
    np.testing.assert_array_equal(got.item_users, want.item_users)


@pytest.mark.parametrize("name,holdout", [("numeric", 0), ("numeric", 2), ("mixed", 0), ("mixed", 2)])
def test_spark_counts_equal_local_counts(spark, logs, tmp_path, name, holdout):
    from funnel.pipelines.cooccurrence_job import run_cooccurrence_job

    path, df, ds = logs[name]
    out = tmp_path / "cooccurrence"
    res = run_cooccurrence_job(spark, path, out, holdout_last=holdout)
    assert res.numeric_ids == (name == "numeric") and res.n_users == ds.n_users
    got = load_cooccurrence(out, ds.item_ids)
    want = cooccurrence_counts(drop_last(ds.sequences, holdout), ds.n_items)
    _assert_equal(got, want)
    index = ds.item_index()
    pairs = pq.read_table(out / "pairs.parquet").to_pylist()
    assert len(pairs) == res.n_pairs == want.pairs.nnz // 2
    assert all(index[p["item_a"]] < index[p["item_b"]] for p in pairs)  # one order: the split's
    meta = json.loads((out / "meta.json").read_text())
    assert meta["holdout_last"] == holdout and meta["format_version"] == 1 and meta["n_items"] == res.n_items
    if holdout == 2:  # the train part of the leave-last-out split, and ItemKNN fitted on it
        train, _ = known_sequences(ds, "dev")
        _assert_equal(got, cooccurrence_counts(train, ds.n_items))
        u1 = list(ds.user_ids).index("1")
        assert ds.item_ids[train[u1][-1]] == ("9" if name == "numeric" else "10")  # the tie, cut as the split cuts
        for params in ((5, 0.0), (100, 10.0)):
            local = ItemKNN(*params).fit(train, ds.n_items)
            assert np.array_equal(ItemKNN(*params).fit_counts(got).sim, local.sim)


def test_min_count_and_errors(spark, logs, tmp_path):
    from funnel.pipelines.cooccurrence_job import run_cooccurrence_job

    path, df, ds = logs["numeric"]
    out = tmp_path / "c"
    run_cooccurrence_job(spark, path, out, holdout_last=1, min_count=3, dataset="ml")
    _assert_equal(load_cooccurrence(out, ds.item_ids),
                  cooccurrence_counts(drop_last(ds.sequences, 1), ds.n_items, min_count=3))
    two = pa.concat_tables([pq.read_table(path), pq.read_table(path).set_column(
        4, "dataset", pa.array(["other"] * len(df)))])
    pq.write_table(two, tmp_path / "two.parquet")
    with pytest.raises(InputError, match="2 datasets"):
        run_cooccurrence_job(spark, tmp_path / "two.parquet", out)
    pq.write_table(pa.table({"user": ["1"], "item_id": ["2"], "ts": [1]}), tmp_path / "bad.parquet")
    with pytest.raises(InputError, match=r"missing columns \['user_id'\]"):
        run_cooccurrence_job(spark, tmp_path / "bad.parquet", out)
    assert json.loads((out / "meta.json").read_text())["min_count"] == 3  # failed runs left it alone


def test_cli_cooccurrence(spark, logs, tmp_path, capsys):
    """Default input: the store's log through its export; what ItemKNN would fit on `load_dataset(store)`."""
    from funnel.core.store import Document, DocumentStore
    from funnel.ranking.rec.store_log import load_dataset

    _, df, _ = logs["numeric"]
    home = tmp_path / "home"
    with DocumentStore(home / "store.sqlite") as store:
        store.write_interactions("ml", [(u, i, t, None) for u, i, t in df.itertuples(index=False, name=None)],
                                 docs=[Document(i, title=f"item {i}", source="ml") for i in NUMERIC])
        ds = load_dataset(store)
    assert main(["--home", str(home), "-q", "pipeline", "cooccurrence", "--holdout-last", "2"]) == 0
    train, _ = known_sequences(ds, "dev")
    got = load_cooccurrence(home / "features" / "cooccurrence", ds.item_ids)
    _assert_equal(got, cooccurrence_counts(train, ds.n_items))
    assert np.array_equal(ItemKNN(10, 2.0).fit_counts(got).sim, ItemKNN(10, 2.0).fit(train, ds.n_items).sim)

    path, _, ds = logs["mixed"]
    out = tmp_path / "mixed-out"
    assert main(["--home", str(home), "-q", "pipeline", "cooccurrence", "--interactions", str(path), "--out", str(out),
                 "--min-count", "2", "--dataset", "ml"]) == 0
    _assert_equal(load_cooccurrence(out, ds.item_ids), cooccurrence_counts(ds.sequences, ds.n_items, min_count=2))

    capsys.readouterr()
    assert main(["--home", str(tmp_path / "empty"), "pipeline", "cooccurrence"]) == 2  # no store, no export
    err = capsys.readouterr().err
    assert "interactions.parquet not found" in err and "Traceback" not in err
    pq.write_table(pa.table({"user_id": ["1"], "item": ["2"], "ts": [1]}), tmp_path / "bad.parquet")
    assert main(["--home", str(home), "pipeline", "cooccurrence", "--interactions", str(tmp_path / "bad.parquet")]) == 2
    assert "missing columns ['item_id']" in capsys.readouterr().err

"""The recommendation log in the document store: interactions and users tables, `store_log.load_dataset`."""
import sqlite3

import numpy as np
import pyarrow.parquet as pq
import pytest

from funnel.core.errors import InputError
from funnel.core.store import DocumentStore
from funnel.ranking.rec.split import build_dataset
from funnel.ranking.rec.store_log import load_dataset

from .test_service import write_log


def test_round_trip(tmp_path, synthetic_log):
    with DocumentStore(tmp_path / "store.sqlite") as store:
        n, m = store.write_interactions("ds", [("u1", "a", 3, 4.0), ("u1", "b", 5, None), ("u2", "a", 4, 1.0)],
                                        [("u1", {"age": 30}), ("u2", {})])
        assert (n, m) == (3, 2)
        store.write_interactions("other", [("x", "y", 1, None)])
        assert store.interaction_datasets() == {"ds": 3, "other": 1}
        assert store.interactions("ds") == [("u1", "a", 3, 4.0), ("u1", "b", 5, None), ("u2", "a", 4, 1.0)]
        assert store.users("ds") == {"u1": {"age": 30}, "u2": {}}
        # a re-ingest replaces the dataset's rows, and only its own
        store.write_interactions("ds", [("u3", "c", 9, 2.0)], [("u3", {"gender": "F"})])
        assert store.interactions("ds") == [("u3", "c", 9, 2.0)] and store.users("ds") == {"u3": {"gender": "F"}}
        assert store.interactions("other") == [("x", "y", 1, None)]
        store.export_parquet(tmp_path / "pq")
    table = pq.read_table(tmp_path / "pq" / "interactions.parquet").to_pydict()
    assert table == {"user_id": ["x", "u3"], "item_id": ["y", "c"], "ts": [1, 9], "value": [None, 2.0],
                     "dataset": ["other", "ds"]}


def test_failed_write_leaves_store_unchanged(tmp_path):
    with DocumentStore(tmp_path / "store.sqlite") as store:
        store.write_interactions("ds", [("u1", "a", 3, None)])
        with pytest.raises(ValueError):
            store.write_interactions("ds", [("u2", "b", 1, None), ("u2", "c", "not a time", None)])
        assert store.interactions("ds") == [("u1", "a", 3, None)]


def test_no_parquet_without_interactions(tmp_path):
    with DocumentStore(tmp_path / "store.sqlite") as store:
        store.export_parquet(tmp_path / "pq")
    assert not (tmp_path / "pq" / "interactions.parquet").exists()


def test_older_store_opens(tmp_path):
    path = tmp_path / "store.sqlite"
    con = sqlite3.connect(path)  # a store written before the tables existed
    con.executescript("CREATE TABLE docs (seq INTEGER PRIMARY KEY AUTOINCREMENT, doc_id TEXT NOT NULL UNIQUE, url TEXT,"
                      " title TEXT NOT NULL DEFAULT '', text TEXT NOT NULL DEFAULT '', source TEXT NOT NULL DEFAULT '',"
                      " fetched_at REAL, content_hash TEXT, status INTEGER, meta TEXT NOT NULL DEFAULT '{}');")
    con.close()
    with DocumentStore(path, readonly=True) as store:
        assert store.interaction_datasets() == {} and store.interactions() == [] and store.users() == {}
        with pytest.raises(InputError, match="funnel ingest movielens"):
            load_dataset(store)
    with DocumentStore(path) as store:  # opened for writing, it gains the tables
        store.write_interactions("ds", [("u", "i", 1, None)])
        assert store.interaction_datasets() == {"ds": 1}


def test_load_dataset_matches_build_dataset(tmp_path, synthetic_log, synthetic_ds):
    with DocumentStore(tmp_path / "store.sqlite") as store:
        write_log(store, synthetic_log)
        ds = load_dataset(store)
        store.write_interactions("second", [("u", "1", 1, None)])
        with pytest.raises(InputError, match="several datasets"):
            load_dataset(store)
        assert load_dataset(store, "movielens").n_users == ds.n_users
    want = build_dataset(*synthetic_log)
    assert ds.item_ids.tolist() == want.item_ids.tolist() and ds.user_ids.tolist() == want.user_ids.tolist()
    for a, b in zip(ds.sequences, want.sequences):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ds.item_genres, want.item_genres)
    np.testing.assert_array_equal(ds.item_year, want.item_year)
    np.testing.assert_array_equal(ds.user_age, want.user_age)
    assert ds.genre_names == want.genre_names and ds.item_titles.tolist() == want.item_titles.tolist()
    assert ds.user_occupation.tolist() == want.user_occupation.tolist()

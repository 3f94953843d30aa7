import numpy as np
import pytest

from funnel.ranking.rec.baselines import ItemKNN
from funnel.ranking.rec.cooccurrence import (cooccurrence_counts, cooccurrence_from_ids, drop_last,
                                             interaction_matrix)
from funnel.ranking.rec.movielens import RecDataError
from funnel.ranking.rec.split import fit_sequences, known_sequences

HIST = [np.array([1, 2, 2]), np.array([1, 2]), np.array([3]), np.array([2, 3]), np.array([], np.int64)]


def test_known_answer_repeats_count_once():
    co = cooccurrence_counts(HIST, 3)
    assert co.item_users.tolist() == [0, 2, 3, 2]
    assert co.pairs.toarray().tolist() == [[0, 0, 0, 0], [0, 0, 2, 0], [0, 2, 0, 1], [0, 0, 1, 0]]
    assert co.pairs.dtype == np.int64
    co2 = cooccurrence_counts(HIST, 3, min_count=2)
    assert co2.pairs.toarray()[2, 3] == 0 and co2.pairs.toarray()[1, 2] == 2 and co2.pairs.nnz == 2


def test_gram_is_xtx(synthetic_ds):
    fit, _ = fit_sequences(synthetic_ds, "dev")
    x = interaction_matrix(fit, synthetic_ds.n_items)
    np.testing.assert_array_equal(cooccurrence_counts(fit, synthetic_ds.n_items).gram(),
                                  (x.T @ x).toarray().astype(np.float64))


def test_drop_last_two_is_the_train_part(synthetic_ds):
    seqs = list(synthetic_ds.sequences) + [np.array([5]), np.array([5, 6])]  # short users keep all
    train = drop_last(seqs, 2)
    assert train[-2].tolist() == [5] and train[-1].tolist() == [5, 6]
    known, _ = known_sequences(synthetic_ds, "dev")
    for a, b in zip(train, known):
        np.testing.assert_array_equal(a, b)
    assert all(np.array_equal(a, b) for a, b in zip(drop_last(seqs, 0), seqs))


def test_from_ids_round_trip_and_itemknn(synthetic_ds):
    fit, _ = fit_sequences(synthetic_ds, "dev")
    co = cooccurrence_counts(fit, synthetic_ds.n_items)
    ids = synthetic_ds.item_ids
    upper = co.pairs.tocoo()
    keep = upper.row < upper.col  # one order only, as the Spark job writes them
    items = np.flatnonzero(co.item_users)
    back = cooccurrence_from_ids(ids[upper.row[keep]], ids[upper.col[keep]], upper.data[keep],
                                 ids[items], co.item_users[items], ids)
    assert (back.pairs != co.pairs).nnz == 0
    np.testing.assert_array_equal(back.item_users, co.item_users)
    a = ItemKNN(20, 5.0).fit(fit, synthetic_ds.n_items)
    b = ItemKNN(20, 5.0).fit_counts(back)
    assert a.n_items == b.n_items and np.array_equal(a.sim, b.sim)
    with pytest.raises(RecDataError, match="'nope'"):
        cooccurrence_from_ids(["nope"], [ids[1]], [1], [], [], ids)

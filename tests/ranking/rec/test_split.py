import numpy as np
import pandas as pd
import pytest

from funnel.ranking.rec.split import (build_dataset, fit_sequences, known_sequences, mask_seen, rank_full,
                                      split_view, top_k)


def test_no_future_leaks(synthetic_ds):
    ds = synthetic_ds
    for name in ("train", "dev", "test"):
        view = split_view(ds, name)
        assert len(view) > 0
        for hist, hts, target, tts in zip(view.histories, view.history_ts, view.targets, view.target_ts):
            assert target not in hist, f"{name}: the target leaked into the history"
            assert (hts <= tts).all(), f"{name}: the history holds an interaction after the target"
            assert (np.diff(hts) >= 0).all()


def test_dev_test_targets_are_the_last_two(synthetic_ds):
    ds = synthetic_ds
    dev, test, train = split_view(ds, "dev"), split_view(ds, "test"), split_view(ds, "train")
    for r, u in enumerate(test.users):
        seq = ds.sequences[u]
        assert test.targets[r] == seq[-1] and dev.targets[r] == seq[-2] and train.targets[r] == seq[-3]
        # test history includes the dev interaction; dev history is exactly the train part
        assert list(test.histories[r]) == list(seq[:-1])
        assert list(dev.histories[r]) == list(seq[:-2])
        assert list(train.histories[r]) == list(seq[:-3])
    fit, _ = fit_sequences(ds, "test")
    assert all(ds.sequences[u][-2] not in fit[u] for u in test.users), "models must not fit on the dev target"


def test_order_is_time_then_item_and_short_users_stay_in_train():
    inter = pd.DataFrame({"user_id": ["a"] * 4 + ["b"] * 2,
                          "item_id": ["10", "9", "2", "5", "1", "2"],
                          "ts": [5, 5, 1, 9, 1, 2]})
    ds = build_dataset(inter)
    ids = ds.item_ids
    assert [ids[i] for i in ds.sequences[0]] == ["2", "9", "10", "5"]  # ties broken by numeric item id
    known, _ = known_sequences(ds, "dev")
    assert len(known[1]) == 2  # user b has 2 interactions: all train, no target
    view = split_view(ds, "test")
    assert list(view.users) == [0] and ids[view.targets[0]] == "5"


def test_mask_seen_and_topk():
    scores = np.array([[9.0, 1.0, 5.0, 3.0, 3.0]])
    masked = mask_seen(scores.copy(), [np.array([2])])
    assert np.isneginf(masked[0, 0]) and np.isneginf(masked[0, 2])
    assert top_k(masked, 3).tolist() == [[3, 4, 1]]  # tie 3/4 goes to the lower index
    assert rank_full(scores, [np.array([2])], 2).tolist() == [[3, 4]]


def test_unknown_split_is_an_error(synthetic_ds):
    with pytest.raises(ValueError, match="split must be one of"):
        split_view(synthetic_ds, "validation")


def test_several_train_targets_per_user(synthetic_ds):
    ds = synthetic_ds
    view = split_view(ds, "train", n_train_targets=3)
    fold, _ = fit_sequences(ds, "train", n_train_targets=3)
    for r, u in enumerate(view.users):
        seq = ds.sequences[u]
        pos = len(view.histories[r])
        assert list(view.histories[r]) == list(seq[:pos]) and view.targets[r] == seq[pos]
        assert len(seq) - 5 <= pos < len(seq) - 2, "train targets are the last 3 train items"
        assert view.targets[r] not in fold[u], "fold models must not fit on a train target"
    assert len(view) == 3 * len(split_view(ds, "train"))

"""Evaluation protocol of the recommendation funnel: indexes a raw interaction log into per-user
sequences and cuts them leave-one-out, so that every stage and baseline is scored on the same targets.

Why leave-one-out by time: it is the protocol of SASRec, BERT4Rec and RecBole's published ML-100K
tables, so figures stay comparable. Per user, interactions are ordered by (timestamp, item index);
the last one is the test target, the one before it the dev target, the rest is train. Users with
fewer than 3 interactions keep all of them in train and have no dev or test target.

What is known at each split (``known_sequences``) is what a model could have seen before the target:
- ``"train"``: each user's train part minus its last ``n_train_targets`` interactions (default 1),
  which are the targets, each with the history before it. This slice trains the LightGBM rankers; the
  models that feed them are fitted on the same known part (the "fold"), so the rankers never learn
  from scores of models that saw their targets. With several targets per user, the later targets'
  histories hold the earlier held-out items (read, never fitted on: as the dev item at test time);
- ``"dev"``: the train part; the target is the dev interaction;
- ``"test"``: the train part plus the dev interaction; the target is the test interaction. Models are
  fitted on the train part only (``fit_sequences``) and read the dev interaction as history.

Items are indexed 1..n_items in the natural order of their ids (numeric when all ids are digits);
index 0 is padding. Full ranking: the candidates of a target are all items the user has not interacted
with before it (``mask_seen``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .movielens import RecDataError

SPLITS = ("train", "dev", "test")


@dataclass(frozen=True)
class RecDataset:
    """An interaction log indexed for modelling; every array is indexed by item or user index."""
    user_ids: np.ndarray          # (n_users,) str
    item_ids: np.ndarray          # (n_items + 1,) str; item_ids[0] = "" is padding
    sequences: list[np.ndarray]   # per user: int64 item indices ordered by (ts, item index)
    timestamps: list[np.ndarray]  # per user: int64 Unix seconds, same order
    genre_names: list[str]
    item_genres: np.ndarray       # (n_items + 1, n_genres) bool
    item_year: np.ndarray         # (n_items + 1,) float64 release year, nan when unknown
    item_titles: np.ndarray       # (n_items + 1,) str
    user_age: np.ndarray          # (n_users,) float64, nan when unknown
    user_gender: np.ndarray       # (n_users,) str, "" when unknown
    user_occupation: np.ndarray   # (n_users,) str, "" when unknown

    @property
    def n_items(self) -> int:
        return len(self.item_ids) - 1

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    def item_index(self) -> dict[str, int]:
        return {iid: i for i, iid in enumerate(self.item_ids) if i > 0}


@dataclass(frozen=True)
class SplitView:
    """One target per user of a split, with the history that precedes it."""
    name: str
    users: np.ndarray             # (n,) user indices
    histories: list[np.ndarray]   # n arrays of item indices, oldest first
    history_ts: list[np.ndarray]  # n arrays of Unix seconds
    targets: np.ndarray           # (n,) item index of the held-out interaction
    target_ts: np.ndarray         # (n,) its timestamp: the request time ("now") of the recommendation

    def __len__(self) -> int:
        return len(self.users)

    def subset(self, rows: np.ndarray) -> "SplitView":
        rows = np.asarray(rows)
        return SplitView(self.name, self.users[rows], [self.histories[i] for i in rows],
                         [self.history_ts[i] for i in rows], self.targets[rows], self.target_ts[rows])


def build_dataset(interactions: pd.DataFrame, items: pd.DataFrame | None = None,
                  users: pd.DataFrame | None = None) -> RecDataset:
    """Index the tables of `movielens.load_movielens` (or any log with the same columns).

    Items listed in ``items`` but never interacted with stay in the catalogue (they are candidates);
    items of the log missing from ``items`` get empty metadata.
    """
    missing = [c for c in ("user_id", "item_id", "ts") if c not in interactions.columns]
    if missing:
        raise RecDataError(f"interactions: missing columns {missing}; expected user_id, item_id, ts")
    inter = pd.DataFrame({"user_id": interactions["user_id"].astype(str),
                          "item_id": interactions["item_id"].astype(str),
                          "ts": interactions["ts"].astype("int64")})
    item_set = set(inter["item_id"].unique())
    if items is not None:
        item_set |= set(items["item_id"].astype(str))
    item_ids = np.array([""] + _natural_sort(item_set), dtype=object)
    index = {iid: i for i, iid in enumerate(item_ids)}
    user_ids = np.array(_natural_sort(set(inter["user_id"].unique())), dtype=object)
    uindex = {u: i for i, u in enumerate(user_ids)}

    inter["u"] = inter["user_id"].map(uindex).astype("int64")
    inter["i"] = inter["item_id"].map(index).astype("int64")
    # The order that defines the split: time, then item index so that equal timestamps cut the same way
    # on every run and every machine.
    inter = inter.sort_values(["u", "ts", "i"], kind="stable")
    bounds = np.searchsorted(inter["u"].to_numpy(), np.arange(len(user_ids) + 1))
    ii, tt = inter["i"].to_numpy(), inter["ts"].to_numpy()
    sequences = [ii[bounds[u]:bounds[u + 1]].copy() for u in range(len(user_ids))]
    timestamps = [tt[bounds[u]:bounds[u + 1]].copy() for u in range(len(user_ids))]

    n = len(item_ids)
    genre_names: list[str] = []
    genres = np.zeros((n, 0), bool)
    year = np.full(n, np.nan)
    titles = np.array([""] * n, dtype=object)
    if items is not None:
        it = items.assign(item_id=items["item_id"].astype(str))
        rows = it["item_id"].map(index).to_numpy()
        if "genres" in it.columns:
            genre_names = sorted({g for gs in it["genres"] for g in gs})
            gpos = {g: j for j, g in enumerate(genre_names)}
            genres = np.zeros((n, len(genre_names)), bool)
            for r, gs in zip(rows, it["genres"]):
                genres[r, [gpos[g] for g in gs]] = True
        if "year" in it.columns:
            year[rows] = pd.to_numeric(it["year"], errors="coerce").astype("float64").to_numpy()
        if "title" in it.columns:
            titles[rows] = it["title"].astype(str).to_numpy()

    age = np.full(len(user_ids), np.nan)
    gender = np.array([""] * len(user_ids), dtype=object)
    occupation = np.array([""] * len(user_ids), dtype=object)
    if users is not None:
        us = users.assign(user_id=users["user_id"].astype(str))
        us = us[us["user_id"].isin(uindex)]
        rows = us["user_id"].map(uindex).to_numpy()
        if "age" in us.columns:
            age[rows] = pd.to_numeric(us["age"], errors="coerce").astype("float64").to_numpy()
        if "gender" in us.columns:
            gender[rows] = us["gender"].astype(str).to_numpy()
        if "occupation" in us.columns:
            occupation[rows] = us["occupation"].astype(str).to_numpy()
    return RecDataset(user_ids, item_ids, sequences, timestamps, genre_names, genres, year, titles,
                      age, gender, occupation)


def _natural_sort(ids: set[str]) -> list[str]:
    """Numeric ids in numeric order ("2" before "10"), anything else as strings."""
    if all(s.isdigit() for s in ids):
        return sorted(ids, key=int)
    return sorted(ids)


def _n_train(length: int) -> int:
    """How many of a user's interactions are train: all of them below 3, else all but the last two."""
    return length if length < 3 else length - 2


def known_sequences(ds: RecDataset, split: str, n_train_targets: int = 1) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per user (all users), the interactions known before the targets of ``split``: (items, timestamps)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if n_train_targets < 1:
        raise ValueError(f"n_train_targets must be >= 1, got {n_train_targets}")
    items, times = [], []
    for seq, ts in zip(ds.sequences, ds.timestamps):
        n = _n_train(len(seq))
        if split == "train":
            n = max(n - n_train_targets, 0)
        elif split == "test" and len(seq) >= 3:
            n += 1
        items.append(seq[:n])
        times.append(ts[:n])
    return items, times


def fit_sequences(ds: RecDataset, split: str, n_train_targets: int = 1) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per user, what a model evaluated on ``split`` may be trained on: the train part for dev and test
    (test reads the dev interaction as history only), the fold (train part minus its last
    ``n_train_targets`` items) for train."""
    if split == "train":
        return known_sequences(ds, "train", n_train_targets)
    return known_sequences(ds, "dev")


def split_view(ds: RecDataset, split: str, n_train_targets: int = 1) -> SplitView:
    """The targets of ``split`` with their histories (users with no target or an empty history are left
    out). Split "train" has up to ``n_train_targets`` rows per user (the last train items), oldest first."""
    known, _ = known_sequences(ds, split, n_train_targets)
    users, hist, hist_ts, targets, target_ts = [], [], [], [], []
    for u, (seq, ts) in enumerate(zip(ds.sequences, ds.timestamps)):
        if len(seq) < 3:
            continue  # all in train: no dev/test target, and too short to give a train target
        first = len(known[u])
        last = _n_train(len(seq)) if split == "train" else first + 1  # exclusive
        for pos in range(max(first, 1), min(last, len(seq))):
            users.append(u)
            hist.append(seq[:pos])
            hist_ts.append(ts[:pos])
            targets.append(seq[pos])
            target_ts.append(ts[pos])
    return SplitView(split, np.array(users, np.int64), hist, hist_ts, np.array(targets, np.int64),
                     np.array(target_ts, np.int64))


def mask_seen(scores: np.ndarray, histories: list[np.ndarray]) -> np.ndarray:
    """Set padding and every already-seen item to -inf, in place: full ranking's candidate set.

    scores: (n_users, n_items + 1) float; row r belongs to histories[r].
    """
    scores[:, 0] = -np.inf
    rows = np.repeat(np.arange(len(histories)), [len(h) for h in histories])
    if len(rows):
        scores[rows, np.concatenate(histories)] = -np.inf
    return scores


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """(n_users, n_cols) scores -> (n_users, k) column indices, best first; ties go to the lower index
    so that runs are reproducible (matters for popularity, which has many ties)."""
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]  # (n, k) unordered
    vals = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -vals), axis=1)
    return np.take_along_axis(part, order, axis=1)


def rank_full(scores: np.ndarray, histories: list[np.ndarray], k: int) -> np.ndarray:
    """Full-ranking top k item indices of each row, seen items and padding excluded. Copies scores."""
    return top_k(mask_seen(np.array(scores, dtype=np.float64, copy=True), histories), k)

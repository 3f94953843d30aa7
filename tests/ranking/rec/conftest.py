"""A synthetic interaction log with sequential structure, built once per session: 60 users x 40 items.

Each user walks the items in order (item i is mostly followed by item i + 1, wrapping at 40), starting
at a random item, with an occasional jump; so the next item is predictable from the last one, which a
sequence model must learn and popularity cannot. Items carry genres by blocks of ten, users random
features. A few equal timestamps exercise the split's tie-break."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

N_USERS, N_ITEMS = 60, 40
GENRES = ["Action", "Comedy", "Drama", "Horror"]


def make_log(seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(1, N_USERS + 1):
        length = int(rng.integers(12, 21))
        item = int(rng.integers(1, N_ITEMS + 1))
        seen = []
        ts = 1_000_000 + int(rng.integers(0, 10_000))
        while len(seen) < length:
            if item not in seen:
                seen.append(item)
                rows.append((str(u), str(item), ts, float(rng.integers(1, 6))))
                ts += int(rng.choice([0, 60, 3600], p=[0.1, 0.6, 0.3]))  # some ties
            item = item % N_ITEMS + 1 if rng.random() < 0.9 else int(rng.integers(1, N_ITEMS + 1))
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "ts", "rating"])
    items = pd.DataFrame({"item_id": [str(i) for i in range(1, N_ITEMS + 1)],
                          "title": [f"Film {i} ({1980 + i % 20})" for i in range(1, N_ITEMS + 1)],
                          "year": pd.array([1980 + i % 20 for i in range(1, N_ITEMS + 1)], dtype="Int64"),
                          "genres": [[GENRES[(i - 1) // 10]] + (["Drama"] if i % 7 == 0 else [])
                                     for i in range(1, N_ITEMS + 1)]})
    users = pd.DataFrame({"user_id": [str(u) for u in range(1, N_USERS + 1)],
                          "age": pd.array(rng.integers(15, 70, N_USERS), dtype="Int64"),
                          "gender": rng.choice(["F", "M"], N_USERS),
                          "occupation": rng.choice(["student", "artist", "other"], N_USERS)})
    return inter, items, users


@pytest.fixture(scope="session")
def synthetic_log():
    return make_log()


@pytest.fixture(scope="session")
def synthetic_ds(synthetic_log):
    from funnel.ranking.rec.split import build_dataset

    return build_dataset(*synthetic_log)

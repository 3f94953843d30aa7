"""Carved splits: TRAIN:fit and TRAIN:select partition TRAIN's queries, the same on every call."""
import pytest

from funnel.core.errors import InputError
from funnel.core.judgements import SELECT_SHARE, read_qrels, split_parts


def _folder(tmp_path, n_queries: int):
    (tmp_path / "qrels").mkdir(parents=True)
    rows = ["query-id\tcorpus-id\tscore"] + [f"q{i}\td{i % 7}\t{1 + i % 2}" for i in range(n_queries)]
    rows += [f"q{i}\td99\t0" for i in range(0, n_queries, 3)]  # a second, graded-0 row for some queries
    (tmp_path / "qrels" / "train.tsv").write_text("\n".join(rows) + "\n")
    return tmp_path


def test_fit_and_select_partition_the_split_by_query(tmp_path):
    data = _folder(tmp_path, 200)
    whole, fit, select = (read_qrels(data, s) for s in ("train", "train:fit", "train:select"))
    assert not set(fit) & set(select)
    assert set(fit) | set(select) == set(whole)
    assert all(fit[q] == whole[q] for q in fit) and all(select[q] == whole[q] for q in select)  # whole queries
    assert len(select) == round(SELECT_SHARE * 200)
    assert read_qrels(data, "train:select") == select  # deterministic


def test_a_query_stays_on_its_side_when_the_split_grows(tmp_path):
    """The carve ranks queries by a hash of their id: adding queries moves few of the old ones."""
    small = read_qrels(_folder(tmp_path / "a", 100), "train:select")
    big = read_qrels(_folder(tmp_path / "b", 200), "train:select")
    assert len(set(small) & set(big)) >= 0.5 * len(small)


def test_tiny_splits_keep_one_query_on_each_side(tmp_path):
    data = _folder(tmp_path, 2)
    assert len(read_qrels(data, "train:select")) == 1 and len(read_qrels(data, "train:fit")) == 1


def test_an_unknown_part_is_refused():
    with pytest.raises(InputError, match="SPLIT:fit or SPLIT:select"):
        split_parts("train:holdout")

"""BEIR ingest: valid folders load completely; every kind of bad input names the file and line
and leaves the store exactly as it was."""
from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from funnel.crawler.beir import ingest_beir
from funnel.core.errors import InputError
from funnel.core.store import DocumentStore


def _dump(store_path: Path) -> list:
    con = sqlite3.connect(store_path)
    try:
        return [con.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall()
                for t in ("docs", "links", "queries", "qrels")]
    finally:
        con.close()


@pytest.fixture
def beir_copy(tiny_dir, tmp_path) -> Path:
    dst = tmp_path / "mini"
    shutil.copytree(tiny_dir, dst)
    return dst


@pytest.fixture
def loaded_store(tiny_dir, tmp_path):
    """A store that already holds the tiny corpus: failed ingests must leave it unchanged."""
    path = tmp_path / "store.sqlite"
    with DocumentStore(path) as store:
        ingest_beir(tiny_dir, store, name="tiny")
    return path


def test_ingest_counts_and_content(tiny_dir, tmp_path):
    with DocumentStore(tmp_path / "s.sqlite") as store:
        counts = ingest_beir(tiny_dir, store, name="tiny")
        assert counts == {"dataset": "tiny", "docs": 50, "queries": 17, "qrels/dev": 9, "qrels/train": 17}
        first = json.loads((tiny_dir / "corpus.jsonl").read_text(encoding="utf-8").splitlines()[0])
        doc = store.get(first["_id"])
        assert doc.title == first["title"] and doc.text == first["text"]
        assert doc.source == "beir:tiny"
        assert store.count() == 50
        dev = store.qrels("tiny", "dev")
        assert sum(len(v) for v in dev.values()) == 9
        assert len(store.queries("tiny")) == 17


def test_reingest_is_idempotent(tiny_dir, loaded_store):
    before = _dump(loaded_store)
    with DocumentStore(loaded_store) as store:
        ingest_beir(tiny_dir, store, name="tiny")
    after = _dump(loaded_store)
    # same rows except the seq counter (replaced documents get new seqs for incremental indexing)
    strip = lambda rows: sorted(r[1:] for r in rows)  # noqa: E731
    assert strip(after[0]) == strip(before[0])
    assert after[1:] == before[1:]


def _corrupt_line(path: Path, lineno: int, new: bytes) -> None:
    lines = path.read_bytes().split(b"\n")
    lines[lineno - 1] = new
    path.write_bytes(b"\n".join(lines))


BAD_CORPUS = [
    ("malformed", b'{"_id": "x1", "text": "abc"', "corpus.jsonl:7: malformed JSON"),
    ("missing_id", b'{"title": "t", "text": "abc"}', "corpus.jsonl:7: missing field '_id'"),
    ("empty_id", b'{"_id": "  ", "text": "abc"}', "corpus.jsonl:7: '_id' must be a non-empty string"),
    ("not_object", b'["_id", "text"]', "corpus.jsonl:7: expected a JSON object"),
    ("text_not_string", b'{"_id": "n1", "text": 5}', "corpus.jsonl:7: field 'text' must be a string"),
    ("invalid_utf8", b'{"_id": "u1", "text": "caf\xe9"}', "corpus.jsonl:7"),
]


@pytest.mark.parametrize("case,line,message", BAD_CORPUS, ids=[c[0] for c in BAD_CORPUS])
def test_bad_corpus_line_is_named_and_store_unchanged(beir_copy, loaded_store, case, line, message):
    _corrupt_line(beir_copy / "corpus.jsonl", 7, line)
    before = _dump(loaded_store)
    with DocumentStore(loaded_store) as store:
        with pytest.raises(InputError) as err:
            ingest_beir(beir_copy, store, name="tiny")
    assert message in str(err.value)
    assert str(beir_copy / "corpus.jsonl") in str(err.value)
    if case == "invalid_utf8":
        assert "UTF-8" in str(err.value)
    assert _dump(loaded_store) == before


def test_duplicate_id_names_both_lines(beir_copy, loaded_store):
    lines = (beir_copy / "corpus.jsonl").read_text(encoding="utf-8").splitlines()
    first = json.loads(lines[2])
    lines[9] = json.dumps({"_id": first["_id"], "title": "dup", "text": "duplicate"})
    (beir_copy / "corpus.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    before = _dump(loaded_store)
    with DocumentStore(loaded_store) as store:
        with pytest.raises(InputError, match=r"corpus\.jsonl:10: duplicate _id .* \(first on line 3\)"):
            ingest_beir(beir_copy, store)
    assert _dump(loaded_store) == before


@pytest.mark.parametrize("name", ["corpus.jsonl", "queries.jsonl"])
def test_empty_file_is_an_error(beir_copy, loaded_store, name):
    (beir_copy / name).write_bytes(b"")
    before = _dump(loaded_store)
    with DocumentStore(loaded_store) as store:
        with pytest.raises(InputError, match=rf"{name}.*empty"):
            ingest_beir(beir_copy, store)
    assert _dump(loaded_store) == before


def test_bad_qrels_line(beir_copy, loaded_store):
    path = beir_copy / "qrels" / "dev.tsv"
    path.write_text(path.read_text(encoding="utf-8") + "q1\tdoc\tvery\n", encoding="utf-8")
    n = len(path.read_text(encoding="utf-8").splitlines())
    before = _dump(loaded_store)
    with DocumentStore(loaded_store) as store:
        with pytest.raises(InputError, match=rf"dev\.tsv:{n}: score must be an integer"):
            ingest_beir(beir_copy, store)
    assert _dump(loaded_store) == before


def test_missing_folder_and_corpus(tmp_path):
    with DocumentStore(tmp_path / "s.sqlite") as store:
        with pytest.raises(InputError, match="not a folder"):
            ingest_beir(tmp_path / "nope", store)
        (tmp_path / "empty").mkdir()
        with pytest.raises(InputError, match="corpus.jsonl"):
            ingest_beir(tmp_path / "empty", store)
        assert store.count() == 0


def test_blank_lines_are_skipped_and_ints_become_ids(tmp_path):
    d = tmp_path / "ints"
    d.mkdir()
    (d / "corpus.jsonl").write_text('{"_id": 1, "text": "one"}\n\n{"_id": "2", "title": "T", "text": "two"}\n',
                                    encoding="utf-8")
    with DocumentStore(tmp_path / "s.sqlite") as store:
        counts = ingest_beir(d, store)
        assert counts["docs"] == 2
        assert store.get("1").text == "one" and store.get("2").title == "T"

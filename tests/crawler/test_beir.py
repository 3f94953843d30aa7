"""BEIR ingest: valid folders load completely; every kind of bad input names the file and line
and leaves the store exactly as it was."""
from __future__ import annotations

import json
import logging
import re
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


HOSTILE_CORPUS = [
    ("deep_nesting", b'{"_id": "n1", "text": "x", "m": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
     "corpus.jsonl:7: JSON nested too deeply"),
    ("lone_surrogate", b'{"_id": "s1", "text": "caf\\ud800e"}', "corpus.jsonl:7: text holds a lone UTF-16 surrogate"),
    ("lone_surrogate_in_metadata", b'{"_id": "s2", "text": "t", "metadata": {"k": "\\udc00"}}',
     "corpus.jsonl:7: text holds a lone UTF-16 surrogate"),
]


@pytest.mark.parametrize("case,line,message", HOSTILE_CORPUS, ids=[c[0] for c in HOSTILE_CORPUS])
def test_hostile_corpus_line_is_named_and_store_unchanged(beir_copy, loaded_store, case, line, message):
    _corrupt_line(beir_copy / "corpus.jsonl", 7, line)
    before = _dump(loaded_store)
    with DocumentStore(loaded_store) as store:
        with pytest.raises(InputError, match=message):
            ingest_beir(beir_copy, store, name="tiny")
    assert _dump(loaded_store) == before


def test_surrogate_pairs_are_still_text(tmp_path):
    d = tmp_path / "pairs"
    d.mkdir()
    (d / "corpus.jsonl").write_text('{"_id": "e1", "text": "smile \\ud83d\\ude00"}\n', encoding="utf-8")
    with DocumentStore(tmp_path / "s.sqlite") as store:
        ingest_beir(d, store)
        assert store.get("e1").text == "smile \U0001F600"


@pytest.mark.parametrize("name", ["corpus.jsonl", "queries.jsonl", "qrels/dev.tsv"])
def test_folder_where_a_file_is_expected(beir_copy, loaded_store, name):
    (beir_copy / name).unlink()
    (beir_copy / name).mkdir()
    before = _dump(loaded_store)
    with DocumentStore(loaded_store) as store:
        with pytest.raises(InputError, match=rf"{name}: is a folder, expected a file"):
            ingest_beir(beir_copy, store, name="tiny")
    assert _dump(loaded_store) == before


def test_line_without_end_is_capped(beir_copy, loaded_store):
    (beir_copy / "corpus.jsonl").unlink()
    (beir_copy / "corpus.jsonl").symlink_to("/dev/zero")  # endless, no newline: must not fill memory
    before = _dump(loaded_store)
    with DocumentStore(loaded_store) as store:
        with pytest.raises(InputError, match=r"corpus\.jsonl:1: line longer than \d+ bytes"):
            ingest_beir(beir_copy, store, name="tiny")
    assert _dump(loaded_store) == before


def test_folder_without_queries_keeps_the_datasets_queries(beir_copy, loaded_store):
    before = _dump(loaded_store)
    (beir_copy / "queries.jsonl").unlink()
    with DocumentStore(loaded_store) as store:  # judgements without the queries they name: refused
        with pytest.raises(InputError, match=r"qrels/ \(dev, train\) but no queries\.jsonl"):
            ingest_beir(beir_copy, store, name="tiny")
    assert _dump(loaded_store) == before
    shutil.rmtree(beir_copy / "qrels")  # the corpus alone: loaded, queries and judgements kept
    with DocumentStore(loaded_store) as store:
        counts = ingest_beir(beir_copy, store, name="tiny")
        assert counts["docs"] == 50 and counts["queries"] == "kept"
        assert len(store.queries("tiny")) == 17 and sum(len(v) for v in store.qrels("tiny", "dev").values()) == 9
    assert _dump(loaded_store)[2:] == before[2:]


@pytest.mark.parametrize("column,message", [(0, r"query-id 'q-nope' is not in .*queries\.jsonl"),
                                            (1, r"corpus-id 'd-nope' is not in .*corpus\.jsonl")])
def test_judgement_naming_an_unknown_id_is_left_out_and_named(beir_copy, loaded_store, column, message, caplog):
    path = beir_copy / "qrels" / "dev.tsv"
    lines = path.read_text(encoding="utf-8").splitlines()
    cols = lines[-1].split("\t")
    cols[column] = "q-nope" if column == 0 else "d-nope"
    path.write_text("\n".join(lines + ["\t".join(cols)]) + "\n", encoding="utf-8")
    before = _dump(loaded_store)
    with DocumentStore(loaded_store) as store, caplog.at_level(logging.WARNING):
        counts = ingest_beir(beir_copy, store, name="tiny")
    assert counts["qrels/dev left out"] == 1  # left out, said so, the rest loaded as before
    assert re.search(rf"dev\.tsv:{len(lines) + 1}: " + message, caplog.text)
    assert _dump(loaded_store)[2:] == before[2:]  # queries and judgements as they were (documents re-written)


def test_doc_id_shared_by_two_datasets_is_refused(beir_copy, loaded_store):
    lines = (beir_copy / "corpus.jsonl").read_text(encoding="utf-8").splitlines()
    shared = json.loads(lines[0])["_id"]
    (beir_copy / "qrels").rename(beir_copy / "qrels-off")
    before = _dump(loaded_store)
    with DocumentStore(loaded_store) as store:
        with pytest.raises(InputError, match=rf"document id '{shared}' is already in the store from 'beir:tiny', "
                                             r"and 'beir:other' has it too \(and 3\+ more\)"):
            ingest_beir(beir_copy, store, name="other")
    assert _dump(loaded_store) == before

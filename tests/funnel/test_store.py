"""The document store: transactional writes, replace semantics, seq order, links, Parquet export."""
from __future__ import annotations

import threading

import pyarrow.parquet as pq
import pytest

from funnel.core.errors import FunnelError
from funnel.core.store import Document, DocumentStore, Link, content_hash


def _doc(i: int, **kw) -> Document:
    return Document(doc_id=f"d{i}", title=f"title {i}", text=f"text number {i}", **kw)


def test_put_get_and_content_hash(tmp_path):
    with DocumentStore(tmp_path / "s.sqlite") as store:
        d = _doc(1, url="http://a/1", outlinks=[Link("http://a/2", "two"), Link("http://a/3")],
                 status=200, fetched_at=1.5, meta={"lang": "en", "zh": "美食"})
        assert store.put_docs([d]) == 1
        got = store.get("d1")
        assert (got.title, got.text, got.url, got.status, got.fetched_at) == ("title 1", "text number 1",
                                                                             "http://a/1", 200, 1.5)
        assert got.meta == {"lang": "en", "zh": "美食"}
        assert got.content_hash == content_hash("text number 1")
        assert [(link.url, link.anchor) for link in store.outlinks("d1")] == [("http://a/2", "two"),
                                                                           ("http://a/3", "")]
        assert sorted(store.iter_links()) == [("d1", "http://a/2"), ("d1", "http://a/3")]
        assert store.get("missing") is None


def test_replace_gets_new_seq_and_new_links(tmp_path):
    with DocumentStore(tmp_path / "s.sqlite") as store:
        store.put_docs([_doc(i) for i in range(3)])
        assert [d.doc_id for d in store.iter_docs()] == ["d0", "d1", "d2"]
        seq_before = store.max_seq()
        store.put_docs([Document("d0", text="changed", outlinks=[Link("x")])])
        assert store.count() == 3
        assert [d.doc_id for d in store.iter_docs(after_seq=seq_before)] == ["d0"]
        assert [d.doc_id for d in store.iter_docs()] == ["d1", "d2", "d0"]
        assert store.get("d0").text == "changed" and list(store.iter_links()) == [("d0", "x")]


def test_iter_docs_window_and_batches(tmp_path):
    with DocumentStore(tmp_path / "s.sqlite") as store:
        store.put_docs([_doc(i) for i in range(25)])
        assert len(list(store.iter_docs(batch=4))) == 25
        assert [d.doc_id for d in store.iter_docs(after_seq=10, upto_seq=13, batch=2)] == ["d10", "d11", "d12"]
        assert set(store.get_many(["d3", "d4", "nope"])) == {"d3", "d4"}


def test_failed_batch_leaves_store_unchanged(tmp_path):
    with DocumentStore(tmp_path / "s.sqlite") as store:
        store.put_docs([_doc(1)])

        def gen():
            yield _doc(2)
            raise RuntimeError("producer died mid-batch")

        with pytest.raises(RuntimeError):
            store.put_docs(gen())
        assert store.count() == 1 and store.get("d2") is None


def test_threads_share_a_store(tmp_path):
    store = DocumentStore(tmp_path / "s.sqlite")
    errors = []

    def work(t):
        try:
            for i in range(20):
                store.put_docs([_doc(t * 100 + i)])
                assert store.get(f"d{t * 100 + i}") is not None
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            store.close()

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and store.count() == 80


def test_readonly_missing_store_is_a_clear_error(tmp_path):
    with pytest.raises(FunnelError, match="does not exist"):
        DocumentStore(tmp_path / "none.sqlite", readonly=True)


def test_parquet_export(tmp_path):
    with DocumentStore(tmp_path / "s.sqlite") as store:
        store.put_docs([_doc(i, outlinks=[Link(f"d{i + 1}", "next")]) for i in range(5)])
        docs_path, links_path = store.export_parquet(tmp_path / "pq")
    docs = pq.read_table(docs_path).to_pydict()
    assert docs["doc_id"] == [f"d{i}" for i in range(5)] and docs["title"][2] == "title 2"
    links = pq.read_table(links_path).to_pydict()
    assert links["src"] == [f"d{i}" for i in range(5)] and links["dst"][0] == "d1" and links["anchor"][0] == "next"

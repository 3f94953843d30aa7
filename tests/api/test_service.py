"""What a hit shows: `snippet` (the one definition) and the per-generation `HitDocs` cache the service reads
titles, URLs and collapsed texts from."""
from __future__ import annotations

import re

from funnel.api.service import collapse_spaces, HitDocs, query_words, snippet, snippet_of, SNIPPET_CHARS
from funnel.core.store import Document, DocumentStore


def _reference_snippet(text: str, query: str, width: int = SNIPPET_CHARS) -> str:
    """The snippet as the service cut it before the words and collapsed texts were computed once."""
    text = " ".join(text.split())
    if len(text) <= width:
        return text
    pos = -1
    low = text.lower()
    for word in sorted(re.findall(r"\w{3,}", query), key=len, reverse=True):
        pos = low.find(word.lower())
        if pos >= 0:
            break
    start = max(0, pos - width // 4) if pos >= 0 else 0
    start = min(start, len(text) - width)
    if start > 0:
        space = text.find(" ", start)
        start = space + 1 if 0 <= space < start + 20 else start
    out = text[start:start + width].rstrip()
    return ("… " if start > 0 else "") + out + (" …" if start + width < len(text) else "")


TEXTS = ["short text", "Alpha  beta\n\tgamma " * 40, ("lorem ipsum " * 60) + "Vitamin D deficiency " + "dolor " * 80,
         "ÉCOLE İstanbul straße " * 30 + "tail", "x" * 500, "  lead  " + "word " * 100]
QUERIES = ["vitamin d deficiency", "GAMMA", "istanbul STRASSE école", "no match here", "", "a b", "dolor ipsum"]


def test_snippet_is_unchanged():
    for text in TEXTS:
        for q in QUERIES:
            want = _reference_snippet(text, q)
            assert snippet(text, q) == want
            assert snippet_of(collapse_spaces(text), query_words(q)) == want


def _store(tmp_path, docs):
    store = DocumentStore(tmp_path / "store.sqlite")
    store.put_docs(docs)
    return store


def test_hit_docs_reads_the_store_once_and_knows_missing_documents(tmp_path):
    store = _store(tmp_path, [Document("a", "Title A", "some   text\nhere", url="http://a/"),
                              Document("b", "", "b text")])
    reads = []
    get_many = store.get_many
    store.get_many = lambda ids: reads.append(list(ids)) or get_many(ids)
    docs = HitDocs(store)
    assert docs.get(["a", "zz", "b"]) == [("Title A", "http://a/", "some text here"), None, ("", None, "b text")]
    assert docs.get(["b", "a", "zz"]) == [("", None, "b text"), ("Title A", "http://a/", "some text here"), None]
    assert reads == [["a", "zz", "b"]]  # the second search read nothing
    store.close()


def test_hit_docs_is_bounded_by_characters(tmp_path):
    store = _store(tmp_path, [Document(f"d{i}", "", "w" * 100) for i in range(10)])
    docs = HitDocs(store, max_chars=350)
    for i in range(10):
        assert docs.get([f"d{i}"]) == [("", None, "w" * 100)]
        assert docs._chars <= 350
    assert len(docs._docs) <= 3
    store.close()


def test_bm25_alone_runs_on_the_event_loop_and_the_old_server_in_threads(tiny_config):
    import threading
    from dataclasses import replace

    from fastapi.testclient import TestClient

    from funnel.api.app import create_app
    from funnel.api.service import quick_pipeline, SearchService
    from funnel.index.searcher import Bm25Retriever
    from funnel.ranking.serving.recall import Bm25Recall

    for lock in (False, True):
        config = replace(tiny_config, serve=replace(tiny_config.serve, pipeline_lock=lock))
        svc = SearchService.open(config, warm=False)
        assert quick_pipeline(svc.pipeline())  # BM25 recall and re-ranking without a dense model
        threads = []
        search = svc.search
        svc.search = lambda *a, **kw: threads.append(threading.current_thread().name) or search(*a, **kw)
        with TestClient(create_app(svc)) as c:
            assert c.post("/search", json={"q": "cancer cells"}).status_code == 200
            assert c.get("/search", params={"q": "cancer cells"}).status_code == 200
        assert svc.runs_on_loop() is not lock
        on_worker = ["worker" in name.lower() for name in threads]  # anyio's "AnyIO worker thread"
        assert on_worker == [lock, lock], threads
        svc.close()

    class RemoteRetriever(Bm25Retriever):  # a retriever calling out (shard servers) is never run on the loop
        pass

    svc = SearchService.open(tiny_config, warm=False)
    stage = svc.pipeline().stages[0][0]
    assert isinstance(stage, Bm25Recall)
    stage.retriever = RemoteRetriever(stage.retriever.reader, stage.retriever.config)
    assert not quick_pipeline(svc.pipeline())
    svc.close()


def test_a_server_process_runs_one_blas_thread():
    from threadpoolctl import threadpool_info

    from funnel.api.app import limit_blas_threads

    limiter = limit_blas_threads()
    try:
        blas = [i for i in threadpool_info() if i["user_api"] == "blas"]
        assert blas and all(i["num_threads"] == 1 for i in blas)  # numpy's OpenBLAS at least
    finally:
        limiter.restore_original_limits()

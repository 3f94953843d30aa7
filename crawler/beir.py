"""BEIR ingest: a BEIR-format folder -> the document store (the second producer next to the crawler).

A BEIR folder holds ``corpus.jsonl`` (``_id``, ``title``, ``text``), ``queries.jsonl``
(``_id``, ``text``) and ``qrels/SPLIT.tsv`` (``query-id<TAB>corpus-id<TAB>score``, with an
optional header). Every file is read and checked in full before anything is written; the
write is one transaction, so bad input leaves the store exactly as it was.
"""
from __future__ import annotations

import logging
from pathlib import Path

from funnel.core.errors import InputError
from funnel.core.judgements import qrels_path, read_jsonl, read_qrels, read_qrels_lines, read_queries
from funnel.core.store import Document, DocumentStore

# the readers are re-exported: callers load a whole BEIR folder from one module
__all__ = ["ingest_beir", "read_corpus", "read_judgements", "read_qrels", "read_queries"]

log = logging.getLogger(__name__)


def read_corpus(data_dir: Path, source: str) -> list[Document]:
    path = Path(data_dir) / "corpus.jsonl"
    docs = []
    for lineno, obj in read_jsonl(path, ("_id", "text")):
        title = obj.get("title") or ""
        if not isinstance(title, str):
            raise InputError(f"{path}:{lineno}: field 'title' must be a string")
        meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
        docs.append(Document(doc_id=obj["_id"], title=title, text=obj["text"], source=source, meta=meta))
    return docs


def read_judgements(data_dir: Path, split: str, queries: dict[str, str],
                    doc_ids: set[str]) -> tuple[list[tuple[str, str, int]], list[str]]:
    """``qrels/SPLIT.tsv`` as rows, and a note per judgement dropped because it names a query or
    document the folder lacks (``file:line: ...``). Such judgements are left out rather than refused:
    published BEIR sets carry a few (documents removed from the corpus after judging), and a judgement
    that points at no text can only mislead an evaluation."""
    rows, dropped = [], []
    for lineno, qid, did, grade in read_qrels_lines(data_dir, split):
        if qid not in queries:
            dropped.append(f"{qrels_path(data_dir, split)}:{lineno}: query-id {qid!r} is not in "
                           f"{data_dir / 'queries.jsonl'}")
        elif did not in doc_ids:
            dropped.append(f"{qrels_path(data_dir, split)}:{lineno}: corpus-id {did!r} is not in "
                           f"{data_dir / 'corpus.jsonl'}")
        else:
            rows.append((qid, did, grade))
    return rows, dropped


def ingest_beir(data_dir: str | Path, store: DocumentStore, name: str | None = None) -> dict:
    """Load a BEIR folder into the store in one transaction. Returns counts per part.

    Without ``queries.jsonl`` (and then without ``qrels/``) only the corpus is loaded: the dataset's
    queries and judgements already in the store are kept as they are.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise InputError(f"{data_dir}: not a folder (expected a BEIR folder with corpus.jsonl)")
    name = name or data_dir.resolve().name
    docs = read_corpus(data_dir, source=f"beir:{name}")
    splits = sorted(p.stem for p in (data_dir / "qrels").glob("*.tsv")) if (data_dir / "qrels").is_dir() else []
    if not (data_dir / "queries.jsonl").exists():
        if splits:
            raise InputError(f"{data_dir}: qrels/ ({', '.join(splits)}) but no queries.jsonl: judgements need "
                             "the queries they name (add queries.jsonl, or remove qrels/ to load the corpus alone)")
        n = store.write_batch(docs)
        return {"dataset": name, "docs": n, "queries": "kept"}
    queries = read_queries(data_dir)
    doc_ids = {d.doc_id for d in docs}
    rows, dropped = {}, {}
    for s in splits:
        rows[s], dropped[s] = read_judgements(data_dir, s, queries, doc_ids)
        if dropped[s]:
            log.warning("%d judgement(s) of qrels/%s.tsv left out: they name ids the folder lacks (first: %s)",
                        len(dropped[s]), s, dropped[s][0])
    store.write_batch(docs, dataset=name, queries=list(queries.items()), qrels=rows)
    return {"dataset": name, "docs": len(docs), "queries": len(queries),
            **{f"qrels/{s}": len(r) for s, r in rows.items()},
            **{f"qrels/{s} left out": len(d) for s, d in dropped.items() if d}}

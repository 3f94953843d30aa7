"""BEIR ingest: a BEIR-format folder -> the document store (the second producer next to the crawler).

A BEIR folder holds ``corpus.jsonl`` (``_id``, ``title``, ``text``), ``queries.jsonl``
(``_id``, ``text``) and ``qrels/SPLIT.tsv`` (``query-id<TAB>corpus-id<TAB>score``, with an
optional header). Every file is read and checked in full before anything is written; the
write is one transaction, so bad input leaves the store exactly as it was.
"""
from __future__ import annotations

from pathlib import Path

from funnel.core.errors import InputError
from funnel.core.judgements import read_jsonl, read_qrels, read_queries
from funnel.core.store import Document, DocumentStore


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


def ingest_beir(data_dir: str | Path, store: DocumentStore, name: str | None = None) -> dict:
    """Load a BEIR folder into the store in one transaction. Returns counts per part."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise InputError(f"{data_dir}: not a folder (expected a BEIR folder with corpus.jsonl)")
    name = name or data_dir.resolve().name
    docs = read_corpus(data_dir, source=f"beir:{name}")
    queries = read_queries(data_dir) if (data_dir / "queries.jsonl").exists() else {}
    splits = sorted(p.stem for p in (data_dir / "qrels").glob("*.tsv")) if (data_dir / "qrels").is_dir() else []
    qrels = {s: read_qrels(data_dir, s) for s in splits}
    rows = {s: [(q, d, g) for q, dd in qr.items() for d, g in dd.items()] for s, qr in qrels.items()}
    store.write_batch(docs, dataset=name, queries=list(queries.items()), qrels=rows)
    return {"dataset": name, "docs": len(docs), "queries": len(queries),
            **{f"qrels/{s}": len(r) for s, r in rows.items()}}

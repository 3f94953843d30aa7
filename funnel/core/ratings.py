"""Relevance ratings a person gives in the dashboard, kept as a BEIR folder under the home
(`PathsConfig.judgements`), so `funnel eval --data HOME/judgements --split ratings` and
`funnel compare` read them like any other judgements.

Files (rewritten whole and published by `os.replace` on every rating, so a reader never sees half a file):
- ``queries.jsonl``: ``{"_id", "text"}`` per rated query. A query the store already judges keeps that
  query's id (its ratings line up with the dataset's judgements); any other query gets
  ``r-`` + the first 12 hex digits of the SHA-1 of its whitespace-normalised text.
- ``.lock``: held (``flock``) while a rating is written, so concurrent raters never lose one.
- ``qrels/ratings.tsv``: TREC qrels, tab-separated ``query-id  0  doc-id  grade`` (grade 0-3), sorted;
  rating a (query, document) pair again replaces its grade.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
from pathlib import Path

from funnel.core.errors import InputError
from funnel.core.judgements import qrels_path, read_qrels, read_queries

RATINGS_SPLIT = "ratings"
GRADES = (0, 1, 2, 3)


def rating_query_id(text: str) -> str:
    """Stable id of a query typed in the dashboard that no judged dataset holds."""
    norm = " ".join(text.split())
    return "r-" + hashlib.sha1(norm.encode("utf-8")).hexdigest()[:12]


def read_ratings(folder: Path) -> tuple[dict[str, str], dict[str, dict[str, int]]]:
    """(query id -> text, query id -> {doc id: grade}) of a ratings folder; empty when none were saved."""
    folder = Path(folder)
    if not qrels_path(folder, RATINGS_SPLIT).exists():
        return {}, {}
    return read_queries(folder), read_qrels(folder, RATINGS_SPLIT)


def _replace(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def save_rating(folder: Path, query_id: str, query_text: str, doc_id: str, grade: int) -> Path:
    """Record `grade` for (query, document) in ``folder``; returns the qrels file."""
    if grade not in GRADES:
        raise InputError(f"grade must be one of {GRADES}, got {grade!r}")
    for name, value in (("query id", query_id), ("doc id", doc_id)):
        if not value or any(c in value for c in "\t\r\n"):
            raise InputError(f"{name} {value!r}: must be non-empty, without tabs or line breaks")
    folder = Path(folder)
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    # read-modify-write under an exclusive lock: two dashboard sessions rating at once both count
    with open(folder / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        queries, qrels = read_ratings(folder)
        queries[query_id] = query_text
        qrels.setdefault(query_id, {})[doc_id] = grade
        # queries first: a qrels line never names a query the folder lacks
        _replace(folder / "queries.jsonl", "".join(json.dumps({"_id": q, "text": t}, ensure_ascii=False) + "\n"
                                                   for q, t in sorted(queries.items())))
        path = qrels_path(folder, RATINGS_SPLIT)
        _replace(path, "".join(f"{q}\t0\t{d}\t{g}\n" for q in sorted(qrels) for d, g in sorted(qrels[q].items())))
    return path

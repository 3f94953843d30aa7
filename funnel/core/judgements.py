"""Judgements and queries of a BEIR folder: the readers every stage that evaluates or trains shares.

A BEIR folder holds ``queries.jsonl`` (``_id``, ``text``) and ``qrels/SPLIT.tsv``
(``query-id<TAB>corpus-id<TAB>score``, with an optional header; TREC's four columns are accepted
too). Each reader checks its file in full and names the file and line of the first problem.
"""
from __future__ import annotations

import hashlib
import json
import math
import random
import re
from collections.abc import Iterator
from pathlib import Path

from funnel.core.errors import InputError


# Longest line a reader accepts: a corpus line without end (a stream, `/dev/zero`) must not fill memory.
MAX_LINE_BYTES = 64 * 1024 * 1024
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")  # JSON escapes of UTF-16 surrogates (paired or lone)


def read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of non-blank lines; invalid UTF-8 or a line over MAX_LINE_BYTES is an error
    naming the line."""
    if path.is_dir():
        raise InputError(f"{path}: is a folder, expected a file")
    if not path.exists():
        raise InputError(f"{path}: file not found")
    empty = True
    try:
        f = open(path, "rb")
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror})") from None
    with f:
        lineno = 0
        while raw := f.readline(MAX_LINE_BYTES + 1):  # bounded: never more than the cap in memory
            lineno += 1
            if len(raw) > MAX_LINE_BYTES:
                raise InputError(f"{path}:{lineno}: line longer than {MAX_LINE_BYTES} bytes "
                                 "(a JSON Lines file has one record per line)")
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InputError(f"{path}:{lineno}: invalid UTF-8 at byte {exc.start}") from None
            if lineno == 1:
                line = line.lstrip("\ufeff")
            if line.strip():
                empty = False
                yield lineno, line
    if empty:
        raise InputError(f"{path}: file is empty")


def read_jsonl(path: Path, required: tuple[str, ...]) -> Iterator[tuple[int, dict]]:
    seen: dict[str, int] = {}
    for lineno, line in read_lines(path):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{lineno}: malformed JSON ({exc.msg} at column {exc.colno})") from None
        except RecursionError:
            raise InputError(f"{path}:{lineno}: JSON nested too deeply") from None
        if _SURROGATE_ESCAPE.search(line):  # a lone "\\ud800" decodes to a str no UTF-8 store can hold
            try:
                json.dumps(obj, ensure_ascii=False).encode("utf-8")
            except UnicodeEncodeError as exc:
                raise InputError(f"{path}:{lineno}: text holds a lone UTF-16 surrogate "
                                 f"({exc.object[exc.start:exc.end]!a}): not a Unicode character") from None
        if not isinstance(obj, dict):
            raise InputError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
        for key in required:
            if key not in obj:
                raise InputError(f"{path}:{lineno}: missing field '{key}'")
        _id = obj["_id"]
        if isinstance(_id, bool) or not isinstance(_id, (str, int)) or str(_id).strip() == "":
            raise InputError(f"{path}:{lineno}: '_id' must be a non-empty string, got {_id!r}")
        obj["_id"] = _id = str(_id)
        for key in required[1:]:
            if not isinstance(obj[key], str):
                raise InputError(f"{path}:{lineno}: field '{key}' must be a string")
        if _id in seen:
            raise InputError(f"{path}:{lineno}: duplicate _id {_id!r} (first on line {seen[_id]})")
        seen[_id] = lineno
        yield lineno, obj


def read_queries(data_dir: Path) -> dict[str, str]:
    return {obj["_id"]: obj["text"] for _, obj in read_jsonl(Path(data_dir) / "queries.jsonl", ("_id", "text"))}


def read_qrels(data_dir: Path, split: str) -> dict[str, dict[str, int]]:
    """Judgements of one split: ``qrels/SPLIT.tsv`` -> {query id: {doc id: grade}}."""
    qrels: dict[str, dict[str, int]] = {}
    for _, qid, did, grade in read_qrels_lines(data_dir, split):
        qrels.setdefault(qid, {})[did] = grade
    return qrels


# Carved splits. "SPLIT:select" is a fixed share of SPLIT's queries and "SPLIT:fit" the rest, so that a
# build can fit on "train:fit" and make every choice (early stopping, best epoch, fusion weights) on
# "train:select", leaving the dev split for a figure nothing was tuned on. The carve depends only on the
# query ids (ranked by a hash), so it is the same on every run and machine and needs no file.
CARVE_PARTS = ("fit", "select")
SELECT_SHARE = 0.15   # of the split's queries go to "select" (at least one, and one stays to fit)


def split_parts(split: str) -> tuple[str, str | None]:
    """"train:select" -> ("train", "select"); "dev" -> ("dev", None)."""
    base, sep, part = split.partition(":")
    if not sep:
        return split, None
    if part not in CARVE_PARTS:
        raise InputError(f"split '{split}': a carved split is SPLIT:fit or SPLIT:select, got ':{part}'")
    return base, part


def select_queries(query_ids) -> set[str]:
    """The carve's "select" queries: the SELECT_SHARE of `query_ids` whose SHA-1 ranks first."""
    ids = sorted(set(query_ids), key=lambda q: hashlib.sha1(q.encode("utf-8")).hexdigest())
    n = min(max(1, math.ceil(SELECT_SHARE * len(ids))), len(ids) - 1) if len(ids) > 1 else 0
    return set(ids[:n])


def qrels_path(data_dir: Path, split: str) -> Path:
    """The file behind a split (a carved split's is its base split's file)."""
    return Path(data_dir) / "qrels" / f"{split_parts(split)[0]}.tsv"


def read_qrels_lines(data_dir: Path, split: str) -> Iterator[tuple[int, str, str, int]]:
    """``(line number, query id, doc id, grade)`` of each judgement of ``qrels/SPLIT.tsv``, checked;
    for a carved split ("train:fit", "train:select") only the rows of its part's queries."""
    base, part = split_parts(split)
    if part is not None:
        rows = list(read_qrels_lines(data_dir, base))
        chosen = select_queries(r[1] for r in rows)
        yield from (r for r in rows if (r[1] in chosen) == (part == "select"))
        return
    path = qrels_path(data_dir, split)
    if not path.exists():
        have = sorted(p.stem for p in (Path(data_dir) / "qrels").glob("*.tsv"))
        raise InputError(f"{path}: no judgements for split '{split}' (splits here: {', '.join(have) or 'none'})")
    for lineno, line in read_lines(path):
        cols = line.rstrip("\r\n").split("\t")
        if lineno == 1 and cols[0].strip().lower() in ("query-id", "query_id", "qid"):
            continue  # header
        if len(cols) == 4:  # TREC qrels: qid iter docid rel
            cols = [cols[0], cols[2], cols[3]]
        if len(cols) != 3:
            raise InputError(f"{path}:{lineno}: expected 3 tab-separated columns "
                             f"(query-id, corpus-id, score), got {len(cols)}")
        qid, did, score = (c.strip() for c in cols)
        try:
            grade = int(score)
        except ValueError:
            raise InputError(f"{path}:{lineno}: score must be an integer, got {score!r}") from None
        if not qid or not did:
            raise InputError(f"{path}:{lineno}: empty query-id or corpus-id")
        yield lineno, qid, did, grade


def gain(grade: int) -> float:
    """Graded gain of a judgement, as nDCG counts it: 2^grade - 1 (0 for unjudged or negative grades)."""
    return float(2 ** grade - 1) if grade > 0 else 0.0


def sample_positives(judged: dict[str, int], cap: int, rng: random.Random) -> list[str]:
    """The positives (grade > 0) of one query, sorted; at most `cap` of them (0: all), drawn without
    replacement with probability proportional to their gain (Efraimidis-Spirakis keys u^(1/w))."""
    pos = sorted(d for d, g in judged.items() if g > 0)
    if not cap or len(pos) <= cap:
        return pos
    keys = {d: rng.random() ** (1.0 / gain(judged[d])) for d in pos}
    return sorted(sorted(pos, key=lambda d: -keys[d])[:cap])

"""Judgements and queries of a BEIR folder: the readers every stage that evaluates or trains shares.

A BEIR folder holds ``queries.jsonl`` (``_id``, ``text``) and ``qrels/SPLIT.tsv``
(``query-id<TAB>corpus-id<TAB>score``, with an optional header; TREC's four columns are accepted
too). Each reader checks its file in full and names the file and line of the first problem.
"""
from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

from funnel.core.errors import InputError


def read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of non-blank lines; invalid UTF-8 is an error naming the line."""
    if not path.exists():
        raise InputError(f"{path}: file not found")
    empty = True
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
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
    path = Path(data_dir) / "qrels" / f"{split}.tsv"
    if not path.exists():
        have = sorted(p.stem for p in (Path(data_dir) / "qrels").glob("*.tsv"))
        raise InputError(f"{path}: no judgements for split '{split}' (splits here: {', '.join(have) or 'none'})")
    qrels: dict[str, dict[str, int]] = {}
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
        qrels.setdefault(qid, {})[did] = grade
    return qrels


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

"""What the dashboard's Recommend page shows, as plain functions over a `RecService` answer (no Streamlit
here, so tests can check the tables): a user's history, every stage's candidates with rank movement
(recall -> coarse -> fine -> rerank), the final items' ranks through the stages, and the rerank trace.

The answer is `funnel.ranking.rec.service.RecService.recommend(..., explain=True)`: ``stages`` holds each
stage's item ids best first, ``ms`` its time, ``trace`` the rerank rules' decisions. Titles and genres
come from ``item(item_id)`` (the service's catalogue look-up), passed in as a function.
"""
from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable

import pandas as pd

from funnel.dashboard.inspect_funnel import movement

ItemLookup = Callable[[str], "dict | None"]  # item id -> {item_id, title, genres, ...} or None


def parse_history(text: str) -> list[str]:
    """Item ids typed by a user, oldest first: separated by commas, semicolons or whitespace."""
    return [t for t in re.split(r"[\s,;]+", text.strip()) if t]


def _genres(genres) -> str:
    return ", ".join(genres or [])


def _when(ts: int) -> str:
    return dt.datetime.fromtimestamp(int(ts), dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def history_frame(history: list[dict]) -> pd.DataFrame:
    """A user's history (`RecService.history`, oldest first) -> rows #, item_id, title, genres, time (UTC);
    the newest interaction last, numbered 1..n."""
    rows = [{"#": n, "item_id": h["item_id"], "title": h.get("title", ""), "genres": _genres(h.get("genres")),
             "time": _when(h["ts"]) if h.get("ts") is not None else ""} for n, h in enumerate(history, 1)]
    return pd.DataFrame(rows, columns=["#", "item_id", "title", "genres", "time"])


def items_frame(result: dict) -> pd.DataFrame:
    """The final items -> rows rank, item_id, title, genres, score (the fine stage's)."""
    rows = [{"rank": r["rank"], "item_id": r["item_id"], "title": r["title"], "genres": _genres(r["genres"]),
             "score": None if r["score"] is None else round(float(r["score"]), 4)} for r in result["items"]]
    return pd.DataFrame(rows, columns=["rank", "item_id", "title", "genres", "score"])


def stage_frames(result: dict, item: ItemLookup,
                 depth: int | None = None) -> list[tuple[str, float, int, pd.DataFrame]]:
    """(stage, ms, candidates, table) per stage in funnel order; the table's rows: rank, move (against
    the stage before: "↑3", "↓1", "=", "new"), prev rank, item_id, title, genres, final (the rank it is
    shown at, blank if not shown); the first ``depth`` rows of each stage (all when None)."""
    final = {r["item_id"]: r["rank"] for r in result["items"]}
    out = []
    prev: dict[str, int] | None = None
    for i, (stage, ids) in enumerate(result.get("stages", {}).items()):
        rows = []
        for rank, iid in enumerate(ids[:depth] if depth else ids, 1):
            meta = item(iid) or {}
            before = prev.get(iid) if prev is not None else None
            rows.append({"rank": rank, "move": movement(before, rank, i == 0), "prev rank": before,
                         "item_id": iid, "title": meta.get("title", ""), "genres": _genres(meta.get("genres")),
                         "final": final.get(iid)})
        frame = pd.DataFrame(rows, columns=["rank", "move", "prev rank", "item_id", "title", "genres", "final"])
        frame[["prev rank", "final"]] = frame[["prev rank", "final"]].astype("Int64")
        out.append((stage, float(result.get("ms", {}).get(stage, float("nan"))), len(ids), frame))
        prev = {iid: r for r, iid in enumerate(ids, 1)}
    return out


def stage_timing(result: dict) -> pd.DataFrame:
    """Rows stage ("1. recall", ...), ms, candidates: the time and list length of each stage."""
    stages = result.get("stages", {})
    return pd.DataFrame([{"stage": f"{i + 1}. {s}", "ms": float(ms), "candidates": len(stages.get(s, []))}
                         for i, (s, ms) in enumerate(result.get("ms", {}).items())],
                        columns=["stage", "ms", "candidates"])


def rank_paths(result: dict) -> pd.DataFrame:
    """Long table (item_id, title, stage, stage_no, rank) of the final items through every stage (slope chart)."""
    rows = []
    titles = {r["item_id"]: r["title"] for r in result["items"]}
    for no, (stage, ids) in enumerate(result.get("stages", {}).items()):
        pos = {iid: r for r, iid in enumerate(ids, 1)}
        for iid in titles:
            if iid in pos:
                rows.append({"item_id": iid, "title": titles[iid], "stage": f"{no + 1}. {stage}", "stage_no": no,
                             "rank": pos[iid]})
    return pd.DataFrame(rows, columns=["item_id", "title", "stage", "stage_no", "rank"])


def _id_rows(ids: list[str], item: ItemLookup, **extra) -> pd.DataFrame:
    rows = []
    for iid in ids:
        meta = item(iid) or {}
        rows.append({"item_id": iid, "title": meta.get("title", ""), "genres": _genres(meta.get("genres")),
                     **{k: v.get(iid) for k, v in extra.items()}})
    return pd.DataFrame(rows, columns=["item_id", "title", "genres", *extra])


def trace_tables(trace: list[dict], item: ItemLookup) -> list[tuple[str, pd.DataFrame | None]]:
    """The rerank trace (`RecService.recommend`'s ``trace``) -> (what the rule did, its table or None) per
    rule, in the order the rules apply: seen and blocked filters, popularity damping, genre MMR with
    the per-genre cap, pinned slots."""
    out: list[tuple[str, pd.DataFrame | None]] = []
    for t in trace or []:
        rule = t.get("rule")
        if rule in ("seen", "blocked"):
            removed = t.get("removed", [])
            what = "already in the history" if rule == "seen" else "blocked by rec.blocked"
            out.append((f"{rule}: {len(removed)} candidate(s) removed, {what}",
                        _id_rows(removed, item) if removed else None))
        elif rule == "popularity_damping":
            after = t.get("relevance_after", {})
            out.append((f"popularity damping {t.get('strength')}: relevance minus strength x popularity percentile",
                        _id_rows(list(after), item, **{"relevance after": after})))
        elif rule == "mmr":
            picks = t.get("picks", [])
            cap = t.get("max_per_genre")
            meta = {p["item_id"]: item(p["item_id"]) or {} for p in picks}
            frame = pd.DataFrame([{"pick": n, "item_id": p["item_id"], "title": meta[p["item_id"]].get("title", ""),
                                   "genres": _genres(meta[p["item_id"]].get("genres")),
                                   "relevance": p["relevance"], "max genre similarity": p["max_genre_similarity"],
                                   "MMR value": p["value"]} for n, p in enumerate(picks, 1)],
                                 columns=["pick", "item_id", "title", "genres", "relevance", "max genre similarity",
                                          "MMR value"])
            skipped, relaxed = t.get("genre_cap_skipped", []), t.get("genre_cap_relaxed", [])
            note = (f"genre MMR, lambda {t.get('lambda')} (1 = relevance only), per-genre cap "
                    f"{cap if cap else 'none'}: {len(picks)} picks")
            if skipped:
                note += f"; skipped by the cap: {', '.join(skipped)}"
            if relaxed:
                note += f"; cap relaxed to fill the list with: {', '.join(relaxed)}"
            out.append((note, frame))
        elif rule == "pinned":
            slots = t.get("slots", {})
            out.append((f"pinned: {len(slots)} item(s) placed at fixed slots (0-based)",
                        _id_rows(list(slots), item, slot=slots)))
        else:
            out.append((t.get("note") or str(rule), None))
    return out

"""Recommendation at request time: `RecService` loads the home's interaction log (the store) and the fitted
funnel (``HOME/models/rec``) once, and answers one user at a time through the funnel's stages, which have
search's shape (`stages.rec_stages`, looped by `serving.stages.run_stages`); the API, the dashboard and
`funnel recommend` all call it.

Requests:
- a known user: their whole logged history, their features (age, gender, occupation), request time one
  second after their last interaction (as `build.FittedFunnel.recommend_for`);
- an explicit ``history`` (cold start: a user the fit never saw, or none): item ids oldest first, every
  timestamp = the service's clock, features unknown (the two-tower reads user index -1 as unknown). A
  known user with an explicit history keeps their features.

The service's clock is one second after the log's last interaction, not the wall clock: a replayed log
(MovieLens ends in 1998) would otherwise look decades stale to the time features (recent popularity,
hours since the last interaction), which the rankers learned at the log's time.

Serve-time rerank overrides (``[rec]`` blocked, pinned, mmr_lambda, max_per_genre, popularity_damping)
replace the setting dev chose at build; ``k`` replaces the list length per request. Requests run one at
a time under a lock: the funnel is ~5 ms per user on a CPU, and torch's threads are shared anyway.

Files read: ``HOME/store.sqlite`` (`store_log.load_dataset`) and ``HOME/models/rec`` (`FittedFunnel.load`,
plus ``log.json`` written by `funnel build --task rec`: the dataset, its size and the SHA-1 of its item and
user ids, checked against the store so that a re-ingested log is never served by a funnel fitted on another).
"""
from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from funnel.core.config import Config
from funnel.core.errors import InputError
from funnel.ranking.serving.stages import Request, run_stages

from .build import FittedFunnel
from .features import build_context
from .funnel import Funnel, FunnelConfig
from .rerank import RerankConfig
from .split import RecDataset
from .stages import rec_stages
from .store_log import read_home_log

log = logging.getLogger(__name__)
LOG_FILE = "log.json"  # next to funnel.json: which log the funnel was fitted on


def log_fingerprint(ds: RecDataset, dataset: str) -> dict:
    """What a fitted funnel must match in the log it serves (written as ``log.json`` at build)."""
    sha = lambda ids: hashlib.sha1("\n".join(map(str, ids)).encode("utf-8")).hexdigest()
    return {"dataset": dataset, "n_items": ds.n_items, "n_users": ds.n_users,
            "interactions": int(sum(len(s) for s in ds.sequences)),
            "item_ids_sha1": sha(ds.item_ids[1:]), "user_ids_sha1": sha(ds.user_ids)}


def serve_rerank(fitted: RerankConfig, config: Config, item_index: dict[str, int]) -> RerankConfig:
    """The fitted rerank setting with the ``[rec]`` overrides applied (-1 / "": keep the fitted value)."""
    rc = config.rec
    out = fitted
    if rc.blocked.strip():
        ids = [s.strip() for s in rc.blocked.split(",") if s.strip()]
        unknown = [i for i in ids if i not in item_index]
        if unknown:
            raise InputError(f"rec.blocked: unknown item ids {unknown[:10]}")
        out = replace(out, blocked=frozenset(item_index[i] for i in ids))
    if rc.pinned.strip():
        pairs = [p.strip().rsplit(":", 1) for p in rc.pinned.split(",") if p.strip()]
        unknown = [i for i, _ in pairs if i not in item_index]
        if unknown:
            raise InputError(f"rec.pinned: unknown item ids {unknown[:10]}")
        out = replace(out, pinned={item_index[i]: int(s) for i, s in pairs})
    if rc.mmr_lambda >= 0:
        out = replace(out, mmr_lambda=rc.mmr_lambda)
    if rc.max_per_genre >= 0:
        out = replace(out, max_per_genre=rc.max_per_genre or None)
    if rc.popularity_damping >= 0:
        out = replace(out, popularity_damping=rc.popularity_damping)
    return out


class RecService:
    """The fitted funnel over the home's log; thread-safe (one request at a time)."""

    def __init__(self, ds: RecDataset, fitted: FittedFunnel, config: Config, dataset: str = ""):
        self.ds, self.fitted, self.dataset = ds, fitted, dataset
        self._lock = threading.Lock()
        self._items = ds.item_index()
        self._users = {u: i for i, u in enumerate(ds.user_ids)}
        rerank = serve_rerank(fitted.config.rerank, config, self._items)
        self.funnel_config: FunnelConfig = replace(fitted.config, rerank=rerank)
        # the whole log is known at serving (build_context "all"), built once
        self._funnel = Funnel(fitted.routes(), build_context(ds, "all"), fitted.coarse, [fitted.sasrec],
                              fitted.fine, self.funnel_config)
        self._stages = rec_stages(self._funnel, ds)  # search's stage shape; the request's k sets rerank's
        # a list can only be as long as the fine stage's (coarse_k survivors)
        self.max_k = min(config.rec.max_k, fitted.config.coarse_k)
        self.default_k = min(config.rec.default_k, self.max_k)
        last = [int(t[-1]) for t in ds.timestamps if len(t)]
        self.now = (max(last) + 1) if last else int(time.time())

    @classmethod
    def load(cls, config: Config, device: str = "cpu") -> "RecService":
        """Read the home's log and its fitted funnel; `InputError` saying what to run when one is missing
        or when they do not belong together."""
        paths = config.paths
        dataset, ds = read_home_log(paths.store)
        folder = Path(paths.rec_funnel)
        if not (folder / "funnel.json").exists():
            raise InputError(f"{folder}: no fitted recommendation funnel; run `funnel build --task rec`")
        try:
            fitted = FittedFunnel.load(folder, device=device)
        except (ValueError, OSError, KeyError) as e:
            raise InputError(f"{folder}: cannot load the fitted funnel ({e}); rerun `funnel build --task rec`") from None
        n_items, n_users = fitted.two_tower.config.n_items, fitted.two_tower.config.n_users
        if (n_items, n_users) != (ds.n_items, ds.n_users):
            raise InputError(f"{folder}: fitted on {n_items} items and {n_users} users, the store's log "
                             f"({dataset}) has {ds.n_items} and {ds.n_users}; rerun `funnel build --task rec`")
        if (folder / LOG_FILE).exists():
            want = json.loads((folder / LOG_FILE).read_text(encoding="utf-8"))
            have = log_fingerprint(ds, dataset)
            diff = [k for k in ("dataset", "item_ids_sha1", "user_ids_sha1") if want.get(k) != have[k]]
            if diff:
                raise InputError(f"{folder}: fitted on another log than the store's ({', '.join(diff)} differ); "
                                 "rerun `funnel build --task rec`")
        else:
            log.warning("%s has no %s: assuming it was fitted on the store's log (sizes match)", folder, LOG_FILE)
        return cls(ds, fitted, config, dataset)

    # -- look-ups ---------------------------------------------------------------------------------

    def known_user(self, user_id: str) -> bool:
        return str(user_id) in self._users

    def _item_row(self, i: int) -> dict:
        ds = self.ds
        year = ds.item_year[i]
        return {"item_id": str(ds.item_ids[i]), "title": str(ds.item_titles[i]),
                "genres": [ds.genre_names[j] for j in np.flatnonzero(ds.item_genres[i])],
                "year": None if np.isnan(year) else int(year)}

    def item(self, item_id: str) -> dict | None:
        """{item_id, title, genres, year}, or None for an id not in the catalogue."""
        i = self._items.get(str(item_id))
        return None if i is None else self._item_row(i)

    def history(self, user_id: str, limit: int | None = None) -> list[dict]:
        """A known user's logged interactions, newest last: [{item_id, title, genres, ts}] (the last
        ``limit`` when given). An unknown user is an `InputError`."""
        u = self._users.get(str(user_id))
        if u is None:
            raise InputError(f"unknown user {user_id!r}")
        seq, ts = self.ds.sequences[u], self.ds.timestamps[u]
        if limit is not None:
            start = max(len(seq) - max(limit, 0), 0)
            seq, ts = seq[start:], ts[start:]
        rows = []
        for i, t in zip(seq, ts):
            row = self._item_row(int(i))
            del row["year"]
            rows.append({**row, "ts": int(t)})
        return rows

    # -- recommend --------------------------------------------------------------------------------

    def _request(self, user: str | None, history: list[str] | None, k: int) -> tuple[Request, np.ndarray]:
        """-> (the stages' request, the history as item indices)."""
        u = self._users.get(str(user)) if user is not None else None
        if history is None:
            if u is None:
                raise InputError(f"unknown user {user!r}: pass their history (item ids, oldest first) for a cold start"
                                 if user is not None else "give a user id or a history of item ids")
            seq, ts = self.ds.sequences[u], self.ds.timestamps[u]
            if len(seq) == 0:
                raise InputError(f"user {user!r} has no logged interactions; pass a history")
            return Request(history=self.ds.item_ids[seq].tolist(), k=k, user=str(user), history_ts=ts,
                           now=int(ts[-1]) + 1), seq
        ids = [str(i).strip() for i in history]
        if not ids or not all(ids):
            raise InputError("history: expected a non-empty list of item ids, oldest first")
        unknown = [i for i in ids if i not in self._items]
        if unknown:
            raise InputError(f"history: unknown item ids {sorted(set(unknown), key=unknown.index)[:10]}")
        seq = np.array([self._items[i] for i in ids], np.int64)
        # a known user keeps their features; an unknown one reads as unknown (the stages map ids to indices)
        return Request(history=ids, k=k, user=None if user is None else str(user),
                       history_ts=np.full(len(seq), self.now, np.int64), now=self.now), seq

    def recommend(self, user: str | None = None, history: list[str] | None = None, k: int = 10,
                  explain: bool = False) -> dict:
        """One user's list: {"user", "k", "items": [{rank, item_id, title, genres, score}], "ms": {stage: ms}}
        plus, with ``explain``, "stages" ({stage: [item ids]}) and "trace" (the rerank decisions).
        ``score``: the fine stage's score (None for a pinned item that did not reach it)."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= self.max_k:
            raise InputError(f"k: expected an integer in 1..{self.max_k}, got {k!r}")
        request, seq = self._request(user, history, int(k))
        with self._lock:
            out = run_stages(self._stages, request)
        traces = {t.stage: t for t in out.trace}
        before = traces.get("fine") or traces.get("coarse") or traces["recall"]
        score_of = dict(zip(before.doc_ids, before.scores.tolist()))
        items = []
        for rank, i in enumerate(out.ords.tolist(), 1):
            row = self._item_row(i)
            items.append({"rank": rank, "item_id": row["item_id"], "title": row["title"], "genres": row["genres"],
                          "score": score_of.get(row["item_id"])})
        result = {"user": None if user is None else str(user), "k": int(k), "items": items,
                  "ms": {t.stage: round(float(t.ms), 3) for t in out.trace}}
        if explain:
            result["stages"] = {t.stage: list(t.doc_ids) for t in out.trace}
            fine_items = np.array([self._items[d] for d in before.doc_ids], np.int64)
            result["trace"] = self._trace(traces["rerank"].detail, fine_items, seq)
        return result

    def _trace(self, trace: dict, fine_items: np.ndarray, seq: np.ndarray) -> list[dict]:
        """`rerank.rerank`'s trace with item ids: positions in it index the fine list after the seen and
        blocked filters, which are recomputed here the same way."""
        ids = self.ds.item_ids
        rc = self.funnel_config.rerank
        seen = set(seq.tolist())
        kept = [int(i) for i in fine_items if i > 0 and i not in seen and i not in rc.blocked]
        name = lambda i: str(ids[i])
        out = []
        if trace.get("seen_removed"):
            out.append({"rule": "seen", "removed": [name(i) for i in trace["seen_removed"] if i > 0]})
        if trace.get("blocked_removed"):
            out.append({"rule": "blocked", "removed": [name(i) for i in trace["blocked_removed"]]})
        if "damped" in trace:
            out.append({"rule": "popularity_damping", "strength": rc.popularity_damping,
                        "relevance_after": {name(i): v for i, v in trace["damped"].items()}})
        if "mmr" in trace:
            out.append({"rule": "mmr", "lambda": rc.mmr_lambda, "max_per_genre": rc.max_per_genre,
                        "picks": [{"item_id": name(kept[j]), "relevance": round(r, 4), "max_genre_similarity": round(s, 4),
                                   "value": round(v, 4)} for j, r, s, v in trace["mmr"]],
                        "genre_cap_skipped": [name(kept[j]) for j in trace.get("genre_cap_skipped", [])],
                        "genre_cap_relaxed": [name(kept[j]) for j in trace.get("genre_cap_relaxed", [])]})
        if "pinned" in trace:
            out.append({"rule": "pinned", "slots": {name(i): s for i, s in trace["pinned"].items()}})
        if not out:
            out.append({"rule": "relevance", "note": "pure relevance order (no diversity rule active)"})
        return out

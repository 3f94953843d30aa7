"""What the dashboard's relevance pages show, as plain functions (no Streamlit, so tests check the
numbers): judgement labels on result tables, per-query metrics with the stage each judged document
was lost at, two saved runs side by side, and the BM25 contribution of every query term.

Judgements come from the store (a dataset's split) and from the ratings saved in the dashboard
(`funnel.core.ratings`); a rating wins over the dataset's grade for the same pair.
"""
from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from funnel.api.service import SearchService
from funnel.core.config import Config, with_overrides
from funnel.core.ratings import RATINGS_SPLIT, rating_query_id, read_ratings
from funnel.index.bm25 import SCORERS
from funnel.ranking.compare import Comparison, rank_movement
from funnel.ranking.evaluate import per_query
from funnel.ranking.serving.pipeline import Pipeline, cascade_runs

RATINGS = "ratings (dashboard)"  # the label of the ratings in the judgement-set choice


def judgement_label(grade: int | None) -> str:
    """"relevant (2)", "not relevant", or "unjudged"."""
    if grade is None:
        return "unjudged"
    return f"relevant ({grade})" if grade > 0 else "not relevant"


@dataclass
class Judgements:
    """The judgements the dashboard marks results with: one store set (or none) plus the ratings."""
    texts: dict[str, str] = field(default_factory=dict)  # query id -> text
    qrels: dict[str, dict[str, int]] = field(default_factory=dict)

    @classmethod
    def load(cls, store, ratings_dir: Path, dataset: str | None = None, split: str | None = None) -> "Judgements":
        j = cls()
        if dataset is not None and split is not None:
            j.qrels = {q: dict(d) for q, d in store.qrels(dataset, split).items()}
            texts = store.queries(dataset)
            j.texts = {q: texts[q] for q in j.qrels if q in texts}
        r_texts, r_qrels = read_ratings(ratings_dir)
        j.texts.update(r_texts)
        for q, docs in r_qrels.items():
            j.qrels.setdefault(q, {}).update(docs)
        return j

    def query_id(self, text: str) -> str:
        """The id of a query typed as `text`: a judged query's own id, else the ratings' id for it."""
        norm = " ".join(text.split())
        for q, t in sorted(self.texts.items()):
            if " ".join(t.split()) == norm:
                return q
        return rating_query_id(text)

    def of(self, text: str) -> dict[str, int] | None:
        """{doc id: grade} of a judged query; None when the query has no judgement at all."""
        return self.qrels.get(self.query_id(text)) or None


def mark_judgements(frame: pd.DataFrame, judged: dict[str, int] | None) -> pd.DataFrame:
    """`frame` (with a doc_id column) plus a "judgement" column after "doc_id"; unchanged when unjudged."""
    if judged is None or frame.empty:
        return frame
    out = frame.copy()
    out.insert(list(out.columns).index("doc_id") + 1, "judgement",
               [judgement_label(judged.get(d)) for d in out["doc_id"]])
    return out


def lost_at(trace, judged: dict[str, int]) -> dict[str, str]:
    """Per relevant document (grade > 0): the first stage whose kept list lacks it ("not recalled" for
    the first stage), or "kept" when the last stage still has it."""
    out = {}
    for d in sorted(x for x, g in judged.items() if g > 0):
        where = "kept"
        for i, t in enumerate(trace):
            if d not in t.doc_ids:
                where = f"not recalled ({t.stage})" if i == 0 else t.stage
                break
        out[d] = where
    return out


def judged_ranks(trace, judged: dict[str, int], titles: dict[str, str]) -> pd.DataFrame:
    """One row per relevant judged document: its grade, its rank in each stage's list (None: not in
    it), the stage it was lost at (`lost_at`) and its title; best grade first."""
    lost = lost_at(trace, judged)
    pos = [(t.stage, {d: i + 1 for i, d in enumerate(t.doc_ids)}) for t in trace]
    rows = [{"doc_id": d, "grade": judged[d], **{stage: p.get(d) for stage, p in pos}, "lost at": lost[d],
             "title": titles.get(d, "")} for d in sorted(lost, key=lambda x: (-judged[x], x))]
    frame = pd.DataFrame(rows, columns=["doc_id", "grade"] + [s for s, _ in pos] + ["lost at", "title"])
    for stage, _ in pos:  # ranks as integers with gaps, not floats
        frame[stage] = frame[stage].astype("Int64")
    return frame


def query_metrics(service: SearchService, judgements: Judgements, profile: str, max_queries: int = 50,
                  k: int = 100) -> pd.DataFrame:
    """One row per judged query (first `max_queries` by id): nDCG@10 and Recall@100 of the funnel's
    final list (`cascade_runs`: later stages' lists followed by the earlier ones' remaining candidates),
    the relevant documents' count and the stage each was lost at; worst nDCG@10 first. The final lists
    are kept as a run in ``frame.attrs["run"]`` (for `funnel.ranking.evaluate.write_trec_run`)."""
    rows = []
    full_run: dict[str, dict[str, float]] = {}
    qids = sorted(q for q, d in judgements.qrels.items() if q in judgements.texts and any(g > 0 for g in d.values()))
    for q in qids[:max_queries]:
        cands = service.rank(judgements.texts[q], k, profile)
        runs = cascade_runs(cands)
        final = runs[cands.trace[-1].stage] if cands.trace else []
        run = {q: {d: float(len(final) - i) for i, d in enumerate(final[:k])}}
        full_run.update(run)
        m = per_query(run, {q: judgements.qrels[q]}, ("nDCG@10", "Recall@100"))[q]
        lost = lost_at(cands.trace, judgements.qrels[q])
        counts: dict[str, int] = {}
        for where in lost.values():
            if where != "kept":
                counts[where] = counts.get(where, 0) + 1
        rows.append({"qid": q, "query": judgements.texts[q], **m, "relevant": len(lost),
                     "lost at": ", ".join(f"{s} ×{n}" for s, n in counts.items()) or "-"})
    frame = pd.DataFrame(rows, columns=["qid", "query", "nDCG@10", "Recall@100", "relevant", "lost at"])
    frame = frame.sort_values(["nDCG@10", "Recall@100", "qid"], ignore_index=True)
    frame.attrs["run"] = full_run
    return frame


def configuration_run(config: Config, profile: str, overrides: list[str], judgements: Judgements,
                      max_queries: int = 50, k: int = 100, on_query=None) -> dict[str, dict[str, float]]:
    """The run of a configuration that is not the served one: `config` with ``section.key=value``
    `overrides` (another profile, stage list, candidate count, model folder: ``fine.model=PATH``), its
    own pipeline opened for the occasion, over the first `max_queries` judged queries (as
    `query_metrics`) -> {qid: {doc id: score}} of the final lists (`cascade_runs`). ``on_query(i, n)``
    is called after each query (a progress bar)."""
    cfg = with_overrides(config, overrides, "the configuration's overrides")
    qids = sorted(q for q, d in judgements.qrels.items() if q in judgements.texts and any(g > 0 for g in d.values()))
    qids = qids[:max_queries]
    pipe = Pipeline.from_config(cfg, profile)
    run: dict[str, dict[str, float]] = {}
    try:
        for i, q in enumerate(qids, 1):
            cands = pipe.search(judgements.texts[q], k)
            final = cascade_runs(cands)[cands.trace[-1].stage] if cands.trace else []
            run[q] = {d: float(len(final) - r) for r, d in enumerate(final[:k])}
            if on_query is not None:
                on_query(i, len(qids))
    finally:
        pipe.close()
    return run


def run_name(profile: str, choice: str | None, tag: str = "") -> str:
    """File name of a run saved from the dashboard: ``dashboard-PROFILE[-TAG]-SET.trec`` (safe characters)."""
    parts = ["dashboard", profile] + ([tag] if tag.strip() else []) + [choice or "ratings"]
    return re.sub(r"[^A-Za-z0-9._-]+", "_", "-".join(p.strip() for p in parts)).strip("_") + ".trec"


def list_runs(runs_dir: Path) -> list[Path]:
    """TREC run files saved under HOME/runs (by `funnel eval`), newest name order."""
    runs_dir = Path(runs_dir)
    return sorted(runs_dir.glob("*.trec")) if runs_dir.exists() else []


def comparison_frame(cmp: Comparison, texts: dict[str, str]) -> pd.DataFrame:
    """Per-query A, B and delta of each metric, largest regression first."""
    frame = pd.DataFrame(cmp.rows())
    frame.insert(1, "query", [texts.get(q, "") for q in frame["qid"]])
    return frame


def summary_frame(cmp: Comparison) -> pd.DataFrame:
    return pd.DataFrame([{"metric": s.metric, "A": s.mean_a, "B": s.mean_b, "B - A": s.delta,
                          "improved": s.improved, "regressed": s.regressed, "tied": s.tied,
                          "p (paired t)": s.p_t_test, "p (randomisation)": s.p_randomisation}
                         for s in cmp.summary])


def side_by_side(run_a: dict[str, float], run_b: dict[str, float], judged: dict[str, int] | None,
                 titles: dict[str, str], depth: int = 20) -> pd.DataFrame:
    """One query's two rankings: each document's rank in A and B, its movement ("↑3", "↓1", "=",
    "new" in B, "dropped" from B), its judgement and title."""
    rows = []
    for r in rank_movement(run_a, run_b, depth):
        mv = r["movement"]
        move = ("new" if r["rank A"] is None else "dropped" if r["rank B"] is None
                else "=" if mv == 0 else f"↑{mv}" if mv > 0 else f"↓{-mv}")
        rows.append({"rank A": r["rank A"], "rank B": r["rank B"], "move": move, "doc_id": r["doc_id"],
                     "judgement": judgement_label((judged or {}).get(r["doc_id"])),
                     "title": titles.get(r["doc_id"], "")})
    return pd.DataFrame(rows, columns=["rank A", "rank B", "move", "doc_id", "judgement", "title"])


def bm25_explanation(retriever, query: str, doc_id: str) -> pd.DataFrame | None:
    """Per analysed query term: tf in the document, df, idf, the length normalisation
    ``1 - b + b * dl / avgdl``, the tf part and its contribution idf x tf part (they sum to the
    document's BM25 score). None when `doc_id` is not in the index."""
    reader, c = retriever.reader, retriever.config
    ord_ = reader.ord_of(doc_id)
    if ord_ is None:
        return None
    seg_no = int(np.searchsorted(reader.bases, ord_, side="right") - 1)
    local = ord_ - reader.bases[seg_no]
    dl = int(reader.doc_lens[ord_])
    idf_fn, tf_fn = SCORERS[c.scorer]
    rows = []
    for term in retriever.analyzer(query):
        tf = 0
        for i, _, lo, hi in reader.postings(term):
            if i == seg_no:
                ords = np.asarray(reader.segments[i].doc_ords[lo:hi])
                pos = int(np.searchsorted(ords, local))
                if pos < len(ords) and ords[pos] == local:
                    tf = int(reader.segments[i].tfs[lo + pos])
        df = reader.df(term)
        idf = float(np.float32(idf_fn(df, reader.n_docs))) if df else 0.0
        part = float(tf_fn(np.array([tf]), np.array([dl]), reader.avg_len, c.k1, c.b)[0]) if tf else 0.0
        rows.append({"term": term, "tf": tf, "df": df, "idf": idf,
                     "length norm": 1 - c.b + c.b * dl / reader.avg_len, "tf part": part,
                     "contribution": idf * part})
    frame = pd.DataFrame(rows, columns=["term", "tf", "df", "idf", "length norm", "tf part", "contribution"])
    frame.attrs.update(doc_len=dl, avg_len=reader.avg_len, k1=c.k1, b=c.b, scorer=c.scorer)
    return frame


_WORD = re.compile(r"\w+", re.UNICODE)


def highlight_terms(text: str, analyzer, terms: set[str]) -> str:
    """`text` as HTML-escaped markup with every word whose analysed form is a query term in ``<mark>``."""
    out, last = [], 0
    for m in _WORD.finditer(text):
        out.append(html.escape(text[last:m.start()]))
        word = m.group(0)
        analysed = analyzer(word)
        out.append(f"<mark>{html.escape(word)}</mark>" if analysed and set(analysed) & terms else html.escape(word))
        last = m.end()
    out.append(html.escape(text[last:]))
    return "".join(out)


def text_window(text: str, analyzer, terms: set[str], width: int = 1500) -> str:
    """`width` characters of `text` from shortly before its first word matching a query term (its start
    when none matches), with "…" where it was cut."""
    start = 0
    for m in _WORD.finditer(text):
        if set(analyzer(m.group(0))) & terms:
            start = max(0, m.start() - width // 5)
            start = text.find(" ", start) + 1 if start else 0  # do not cut a word in half
            break
    if len(text) - start < width:
        start = max(0, len(text) - width)
    return ("…" if start else "") + text[start:start + width] + ("…" if start + width < len(text) else "")


def ratings_choice(sets: list[tuple[str, str]]) -> list[str]:
    """The judgement sets offered: each store (dataset, split) as "dataset / split", then the ratings."""
    return [f"{d} / {s}" for d, s in sets] + [RATINGS]


def parse_choice(choice: str | None) -> tuple[str | None, str | None]:
    if not choice or choice == RATINGS:
        return None, None
    dataset, split = choice.split(" / ", 1)
    return dataset, split


__all__ = ["RATINGS", "RATINGS_SPLIT", "Judgements", "bm25_explanation", "comparison_frame", "highlight_terms",
           "judged_ranks", "judgement_label", "list_runs", "lost_at", "mark_judgements", "parse_choice", "query_metrics",
           "ratings_choice", "side_by_side", "summary_frame", "text_window"]

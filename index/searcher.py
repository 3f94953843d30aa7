"""Query side of the inverted index: opens the live segments (memory-mapped) and answers
BM25 / TF-IDF top-k and boolean AND queries. Feeds `funnel.ranking.serving.recall` and the CLI/API.

Collection statistics (N, average length, document frequencies) are combined over the live
segments at load time, excluding deleted documents, so an index of several segments scores
exactly like one full build of the same documents.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from funnel.core.config import AnalyzerConfig, BM25Config
from funnel.core.errors import FunnelError
from funnel.index.analyze import Analyzer, check_compatible
from funnel.index.bm25 import SCORERS, top_k
from funnel.index.builder import read_manifest
from funnel.index.segments import RECOVER, SegmentData, read_segment


@dataclass
class Hits:
    """Ranked results: global doc ordinals, external ids and scores, best first."""
    ords: np.ndarray  # int64 (k,)
    scores: np.ndarray  # float32 (k,)
    doc_ids: list[str]

    def __len__(self) -> int:
        return len(self.doc_ids)


class IndexReader:
    """A snapshot of an index folder: the segments its manifest named when opened."""

    def __init__(self, index_dir: str | Path, mmap: bool = True):
        self.dir = Path(index_dir)
        manifest = read_manifest(self.dir)
        if manifest is None:
            raise FunnelError(f"no index at {self.dir}: build one with `funnel index`")
        self.manifest = manifest
        self.segments: list[SegmentData] = []
        self.bases: list[int] = []
        live_masks = []
        base = 0
        for entry in manifest["segments"]:
            seg = read_segment(self.dir / entry["name"], mmap=mmap)
            live = np.ones(seg.n_docs, dtype=bool)
            if entry.get("deletes"):
                path = self.dir / entry["name"] / entry["deletes"]
                try:
                    live[np.load(path)] = False
                except (OSError, ValueError, IndexError) as exc:
                    raise FunnelError(f"{path}: cannot be read ({type(exc).__name__}: {exc}): {RECOVER}") from None
            self.segments.append(seg)
            self.bases.append(base)
            live_masks.append(live)
            base += seg.n_docs
        self.n_total = base
        self.live = np.concatenate(live_masks) if live_masks else np.zeros(0, bool)  # (n_total,)
        self.doc_ids: list[str] = [d for s in self.segments for d in s.doc_ids]
        # the same ids as an object array: fancy-indexing 1,000 ids is 10x faster than a list comprehension
        self.doc_id_array = np.array(self.doc_ids, dtype=object)
        self.doc_lens = (np.concatenate([np.asarray(s.doc_lens) for s in self.segments])
                         if self.segments else np.zeros(0, np.int32))  # (n_total,)
        self.n_docs = int(self.live.sum())
        self.sum_len = int(self.doc_lens[self.live].sum(dtype=np.int64))
        self.avg_len = self.sum_len / max(self.n_docs, 1)
        self._term_maps = [dict(zip(s.terms, range(len(s.terms)))) for s in self.segments]
        self._live_df = []  # per segment: (n_terms,) live document frequency
        for seg, live in zip(self.segments, live_masks):
            cs = np.concatenate([[0], np.cumsum(live[np.asarray(seg.doc_ords)], dtype=np.int64)])
            offs = np.asarray(seg.offsets)
            self._live_df.append(cs[offs[1:]] - cs[offs[:-1]])
        self._ord_of: dict[str, int] | None = None

    @property
    def analyzer_settings(self) -> dict:
        return self.manifest["analyzer"]

    def postings(self, term: str):
        """Yield (segment index, term id, start, end) for each segment holding `term`: its postings
        are ``seg.doc_ords[start:end]`` / ``seg.tfs[start:end]`` (segment-local ordinals)."""
        for i, (seg, tmap) in enumerate(zip(self.segments, self._term_maps)):
            t = tmap.get(term)
            if t is not None:
                lo, hi = seg.offsets[t], seg.offsets[t + 1]
                yield i, t, lo, hi

    def df(self, term: str) -> int:
        return int(sum(self._live_df[i][t] for i, t, _, _ in self.postings(term)))

    def ord_of(self, doc_id: str) -> int | None:
        if self._ord_of is None:
            self._ord_of = {d: i for i, d in enumerate(self.doc_ids) if self.live[i]}
        return self._ord_of.get(doc_id)


class Bm25Retriever:
    """Eager term-at-a-time BM25 (or TF-IDF): tf parts precomputed at load, one dense accumulator per query."""

    def __init__(self, reader: IndexReader, config: BM25Config | None = None, analyzer: Analyzer | None = None):
        self.reader = reader
        self.config = config or BM25Config()
        if self.config.scorer not in SCORERS:
            raise FunnelError(f"bm25.scorer: unknown scorer {self.config.scorer!r}; choose one of {sorted(SCORERS)}")
        self.analyzer = analyzer or Analyzer(AnalyzerConfig(**{k: v for k, v in reader.analyzer_settings.items()
                                                               if k not in ("name", "version")}))
        check_compatible(reader.analyzer_settings, self.analyzer, f"index {reader.dir}")
        self._idf, tf_fn = SCORERS[self.config.scorer]
        c = self.config
        self._impacts = []  # per segment: (n_postings,) float32 tf part, 0 for deleted docs
        for seg, base in zip(reader.segments, reader.bases):
            ords = np.asarray(seg.doc_ords)
            imp = tf_fn(np.asarray(seg.tfs), np.asarray(seg.doc_lens)[ords], reader.avg_len, c.k1, c.b)
            imp = imp.astype(np.float32, copy=False)
            imp[~reader.live[base + ords]] = 0.0
            self._impacts.append(imp)
        # per segment: (n_postings,) global doc ordinals (the segment's own array when its base is 0)
        self._gords = [np.asarray(seg.doc_ords) if base == 0 else np.asarray(seg.doc_ords, np.int64) + base
                       for seg, base in zip(reader.segments, reader.bases)]
        self._cache: dict[str, tuple | None] = {}

    @classmethod
    def open(cls, index_dir: str | Path, config: BM25Config | None = None) -> "Bm25Retriever":
        return cls(IndexReader(index_dir), config)

    def _term(self, term: str):
        """(idf, [(global ords, tf parts)] per segment) of a term; None if absent. Cached per term."""
        entry = self._cache.get(term)
        if entry is None and term not in self._cache:
            r = self.reader
            plist = list(r.postings(term))
            df = sum(int(r._live_df[i][t]) for i, t, _, _ in plist)
            if df:
                idf = np.float32(self._idf(df, r.n_docs))
                entry = (idf, [(self._gords[i][lo:hi], self._impacts[i][lo:hi]) for i, _, lo, hi in plist])
            if len(self._cache) > 100_000:
                self._cache.clear()
            self._cache[term] = entry
        return entry

    def score_terms(self, terms: list[str]) -> np.ndarray:
        """(n_total,) float64 scores of every document for analysed query terms.

        All postings of the query are gathered and summed by one ``np.bincount`` (a C loop),
        instead of one scatter-add per term. Each document's contributions are summed in
        query-term order whatever the segment layout, so scores are bit-identical across
        layouts of the same documents.
        """
        ords, weights = [], []
        for term in terms:
            entry = self._term(term)
            if entry is None:
                continue
            idf, parts = entry
            for g, imp in parts:
                ords.append(g)
                weights.append(imp * idf)
        n = self.reader.n_total
        if not ords:
            return np.zeros(n, dtype=np.float64)
        return np.bincount(np.concatenate(ords), weights=np.concatenate(weights), minlength=n)

    def score(self, query: str) -> np.ndarray:
        return self.score_terms(self.analyzer(query))

    def search(self, query: str, k: int = 10) -> Hits:
        return self.search_terms(self.analyzer(query), k)

    def search_terms(self, terms: list[str], k: int = 10) -> Hits:
        scores = self.score_terms(terms)
        best = top_k(scores, k)
        return Hits(best, scores[best], self.reader.doc_id_array[best].tolist())

    def boolean_and(self, query: str, k: int | None = None) -> Hits:
        """Documents containing every query term (classic boolean AND), ranked by BM25."""
        terms = list(dict.fromkeys(self.analyzer(query)))
        r = self.reader
        if not terms:
            return Hits(np.zeros(0, np.int64), np.zeros(0, np.float32), [])
        lists = []
        for term in terms:
            parts = [np.asarray(r.segments[i].doc_ords[lo:hi], np.int64) + r.bases[i]
                     for i, _, lo, hi in r.postings(term)]
            if not parts:
                return Hits(np.zeros(0, np.int64), np.zeros(0, np.float32), [])
            lists.append(np.concatenate(parts))
        lists.sort(key=len)
        result = lists[0]
        for plist in lists[1:]:  # galloping-style intersection: binary search the shorter list into the longer
            pos = np.minimum(np.searchsorted(plist, result), len(plist) - 1)
            result = result[plist[pos] == result]
            if not len(result):
                break
        result = result[r.live[result]]
        scores = self.score_terms(terms)[result]
        order = np.lexsort((result, -scores))
        if k is not None:
            order = order[:k]
        result = result[order]
        return Hits(result, scores[order], [r.doc_ids[i] for i in result])

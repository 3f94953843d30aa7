"""Query side of the inverted index: opens the live segments (memory-mapped) and answers
BM25 / TF-IDF top-k and boolean AND queries. Feeds `funnel.ranking.serving.recall` and the CLI/API.

Collection statistics (N, average length, document frequencies) are combined over the live
segments at load time, excluding deleted documents, so an index of several segments scores
exactly like one full build of the same documents.

A sharded index (`funnel.index.shards`) opens through the same constructors (`IndexReader(path)`,
`Bm25Retriever.open(path)`): one `Bm25Retriever` per shard, each scoring with the global statistics
of the top-level manifest; a query is scattered to every shard and the shards' top k are gathered by
(score, global ordinal), which gives the single index's ids and scores. `open_shard` opens one shard
alone with those global statistics (what `funnel serve --shard I` serves); `funnel.index.remote`
gathers such shard servers' answers over HTTP with the same merge.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from funnel.core.config import AnalyzerConfig, BM25Config
from funnel.core.errors import FunnelError
from funnel.index.analyze import Analyzer, check_compatible
from funnel.index.bm25 import SCORERS, top_k
from funnel.index.builder import read_manifest
from funnel.index.segments import RECOVER, SegmentData, read_segment
from funnel.index.shards import is_sharded, read_stats, shard_manifest


@dataclass
class Hits:
    """Ranked results: global doc ordinals, external ids and scores, best first."""
    ords: np.ndarray  # int64 (k,)
    scores: np.ndarray  # float32 (k,)
    doc_ids: list[str]

    def __len__(self) -> int:
        return len(self.doc_ids)


@dataclass(frozen=True)
class CollectionStats:
    """Statistics BM25 needs from the whole collection, when an index is one shard of it."""
    n_docs: int
    avg_len: float
    terms: list[str]  # sorted (code-point order)
    dfs: np.ndarray  # int64 (n_terms,)

    def df(self, term: str) -> int:
        i = bisect.bisect_left(self.terms, term)
        return int(self.dfs[i]) if i < len(self.terms) and self.terms[i] == term else 0


class IndexReader:
    """A snapshot of an index folder: the segments its manifest named when opened.

    On a sharded index folder the constructor returns a `ShardedIndexReader` (same attributes).
    ``manifest`` pins the segments to open (a shard as its sharded index's manifest names it).
    """

    def __new__(cls, index_dir: str | Path, mmap: bool = True, manifest: dict | None = None):
        if cls is IndexReader and manifest is None:
            manifest = read_manifest(Path(index_dir))
            if is_sharded(manifest):
                return ShardedIndexReader(index_dir, mmap, manifest)
        obj = super().__new__(cls)
        obj._opened = manifest  # read once: a manifest replaced in between cannot switch kinds under us
        return obj

    def __init__(self, index_dir: str | Path, mmap: bool = True, manifest: dict | None = None):
        self.dir = Path(index_dir)
        manifest = manifest or getattr(self, "_opened", None) or read_manifest(self.dir)
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

    def __init__(self, reader: IndexReader, config: BM25Config | None = None, analyzer: Analyzer | None = None,
                 stats: CollectionStats | None = None):
        """``stats``: the whole collection's statistics when `reader` is one shard of it (default: its own)."""
        self.reader = reader
        self.stats = stats
        self.config = config or BM25Config()
        if self.config.scorer not in SCORERS:
            raise FunnelError(f"bm25.scorer: unknown scorer {self.config.scorer!r}; choose one of {sorted(SCORERS)}")
        self.analyzer = analyzer or index_analyzer(reader)
        check_compatible(reader.analyzer_settings, self.analyzer, f"index {reader.dir}")
        self._idf, tf_fn = SCORERS[self.config.scorer]
        c = self.config
        avg_len = stats.avg_len if stats else reader.avg_len
        self._impacts = []  # per segment: (n_postings,) float32 tf part, 0 for deleted docs
        for seg, base in zip(reader.segments, reader.bases):
            ords = np.asarray(seg.doc_ords)
            imp = tf_fn(np.asarray(seg.tfs), np.asarray(seg.doc_lens)[ords], avg_len, c.k1, c.b)
            imp = imp.astype(np.float32, copy=False)
            imp[~reader.live[base + ords]] = 0.0
            self._impacts.append(imp)
        # per segment: (n_postings,) global doc ordinals (the segment's own array when its base is 0)
        self._gords = [np.asarray(seg.doc_ords) if base == 0 else np.asarray(seg.doc_ords, np.int64) + base
                       for seg, base in zip(reader.segments, reader.bases)]
        self._cache: dict[str, tuple | None] = {}

    @classmethod
    def open(cls, index_dir: str | Path, config: BM25Config | None = None) -> "Bm25Retriever":
        """The retriever of an index folder: a `ShardedBm25Retriever` (same methods) on a sharded one."""
        reader = IndexReader(index_dir)
        if isinstance(reader, ShardedIndexReader):
            return ShardedBm25Retriever(reader, config)
        return cls(reader, config)

    def _term(self, term: str):
        """(idf, [(global ords, tf parts)] per segment) of a term; None if absent. Cached per term."""
        entry = self._cache.get(term)
        if entry is None and term not in self._cache:
            r = self.reader
            plist = list(r.postings(term))
            if self.stats is None:
                df, n_docs = sum(int(r._live_df[i][t]) for i, t, _, _ in plist), r.n_docs
            else:  # a shard: idf from the whole collection
                df, n_docs = (self.stats.df(term) if plist else 0), self.stats.n_docs
            if df:
                idf = np.float32(self._idf(df, n_docs))
                entry = (idf, [(self._gords[i][lo:hi], self._impacts[i][lo:hi]) for i, _, lo, hi in plist])
            if len(self._cache) > 100_000:
                self._cache.clear()
            self._cache[term] = entry
        return entry

    def score_terms(self, terms: list[str], term_weights: list[float] | None = None) -> np.ndarray:
        """(n_total,) float64 scores of every document for analysed query terms.

        All postings of the query are gathered and summed by one ``np.bincount`` (a C loop),
        instead of one scatter-add per term. Each document's contributions are summed in
        query-term order whatever the segment layout, so scores are bit-identical across
        layouts of the same documents. ``term_weights`` (one per term; e.g. an expanded query,
        `funnel.ranking.serving.prf`) scales each term's contribution; None: every term counts once.
        """
        if term_weights is not None and len(term_weights) != len(terms):
            raise FunnelError(f"{len(terms)} query terms but {len(term_weights)} term weights")
        ords, weights = [], []
        for i, term in enumerate(terms):
            entry = self._term(term)
            if entry is None:
                continue
            idf, parts = entry
            if term_weights is not None:
                idf = idf * np.float32(term_weights[i])
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


def index_analyzer(reader) -> Analyzer:
    """The analyzer an index was built with (queries must be analysed the same way)."""
    return Analyzer(AnalyzerConfig(**{k: v for k, v in reader.analyzer_settings.items()
                                      if k not in ("name", "version")}))


class ShardedIndexReader:
    """A snapshot of a sharded index: every shard opened (memory-mapped) at the generation the top-level
    manifest names, seen as one collection: global ordinals are the shards' documents concatenated in
    shard (= ``seq``) order, the single index's ordinals; N, average length and df are the global ones."""

    def __init__(self, index_dir: str | Path, mmap: bool = True, manifest: dict | None = None):
        self.dir = Path(index_dir)
        manifest = manifest or read_manifest(self.dir)
        if not is_sharded(manifest):
            raise FunnelError(f"{self.dir}: not a sharded index (build one with `funnel pipeline index --shards N`)")
        self.manifest = manifest
        self.shards = [IndexReader(self.dir / e["name"], mmap, manifest=shard_manifest(manifest, e))
                       for e in manifest["shards"]]
        self.bases = np.concatenate([[0], np.cumsum([s.n_total for s in self.shards])]).astype(np.int64)[:-1]
        self.n_total = int(sum(s.n_total for s in self.shards))
        self.live = np.concatenate([s.live for s in self.shards]) if self.shards else np.zeros(0, bool)
        self.doc_ids: list[str] = [d for s in self.shards for d in s.doc_ids]
        self.doc_id_array = np.array(self.doc_ids, dtype=object)
        self.doc_lens = (np.concatenate([s.doc_lens for s in self.shards])
                         if self.shards else np.zeros(0, np.int32))  # (n_total,)
        st = manifest["stats"]
        self.n_docs, self.sum_len = int(st["n_docs"]), int(st["sum_doc_len"])
        if self.n_docs != sum(s.n_docs for s in self.shards) or self.sum_len != sum(s.sum_len for s in self.shards):
            raise FunnelError(f"{self.dir / 'manifest.json'}: statistics disagree with the shards' documents: "
                              "rebuild with `funnel pipeline index --shards N`")
        self.stats = collection_stats(self.dir, manifest)
        self.avg_len = self.stats.avg_len
        self._ord_of: dict[str, int] | None = None

    @property
    def analyzer_settings(self) -> dict:
        return self.manifest["analyzer"]

    def df(self, term: str) -> int:
        return self.stats.df(term)

    def ord_of(self, doc_id: str) -> int | None:
        if self._ord_of is None:
            self._ord_of = {d: i for i, d in enumerate(self.doc_ids) if self.live[i]}
        return self._ord_of.get(doc_id)


def collection_stats(index_dir: str | Path, manifest: dict) -> CollectionStats:
    """The whole collection's BM25 statistics a sharded index's top-level manifest names."""
    st = manifest["stats"]
    n_docs, sum_len = int(st["n_docs"]), int(st["sum_doc_len"])
    terms, dfs = read_stats(index_dir, manifest)
    return CollectionStats(n_docs, sum_len / max(n_docs, 1), terms, dfs)  # as IndexReader computes it: identical floats


def open_shard(index_dir: str | Path, shard: int, config: BM25Config | None = None,
               manifest: dict | None = None) -> Bm25Retriever:
    """Shard `shard` of the sharded index at `index_dir` alone, scoring with the global statistics, so a
    document gets the single index's BM25 score; its ordinals are the shard's own (0 .. its n_total - 1).
    ``manifest``: the top-level manifest already read (default: read it now)."""
    index_dir = Path(index_dir)
    manifest = manifest or read_manifest(index_dir)
    if manifest is None:
        raise FunnelError(f"no index at {index_dir}: build a sharded one with `funnel pipeline index --shards N`")
    if not is_sharded(manifest):
        raise FunnelError(f"{index_dir} is a single index, not a sharded one: build one with "
                          "`funnel pipeline index --shards N`, or serve it whole with `funnel serve`")
    entries = manifest["shards"]
    if not 0 <= shard < len(entries):
        raise FunnelError(f"shard {shard} is out of range: {index_dir} has {len(entries)} shards "
                          f"(0 to {len(entries) - 1})")
    entry = entries[shard]
    reader = IndexReader(index_dir / entry["name"], manifest=shard_manifest(manifest, entry))
    if reader.n_docs != entry["n_docs"]:
        raise FunnelError(f"{index_dir / entry['name']}: {reader.n_docs} documents but the top-level manifest "
                          f"says {entry['n_docs']}: rebuild with `funnel pipeline index --shards N`")
    return Bm25Retriever(reader, config, stats=collection_stats(index_dir, manifest))


def gather_hits(hits: list[Hits], bases: np.ndarray, doc_id_array: np.ndarray, k: int | None) -> Hits:
    """Shards' hits (shard-local ordinals; shard i's first document is global ordinal ``bases[i]``) ->
    the global top k, best first, ties by lower global ordinal, as `top_k` orders one index."""
    if not hits:
        return Hits(np.zeros(0, np.int64), np.zeros(0, np.float64), [])
    ords = np.concatenate([np.asarray(h.ords, np.int64) + base for h, base in zip(hits, bases)])
    scores = np.concatenate([np.asarray(h.scores) for h in hits])
    order = np.lexsort((ords, -scores))[:k]
    ords = ords[order]
    return Hits(ords, scores[order], doc_id_array[ords].tolist())


class ShardedBm25Retriever:
    """`Bm25Retriever`'s methods over a sharded index: scatter to one retriever per shard (global
    statistics), gather the top k by (score desc, global ordinal asc), as `top_k` orders one index.

    ``shards`` (default: a `Bm25Retriever` per shard of `reader`, in this process): anything with their
    ``search_terms``, ``score_terms`` and ``boolean_and`` over shard-local ordinals, in shard order
    (`funnel.index.remote.ShardClient`: a `funnel serve --shard` process)."""

    def __init__(self, reader: ShardedIndexReader, config: BM25Config | None = None,
                 analyzer: Analyzer | None = None, shards: list | None = None):
        self.reader = reader
        self.config = config or BM25Config()
        self.analyzer = analyzer or index_analyzer(reader)
        self.shards = shards if shards is not None else [
            Bm25Retriever(s, self.config, self.analyzer, stats=reader.stats) for s in reader.shards]
        self._idf = SCORERS[self.config.scorer][0] if self.config.scorer in SCORERS else None

    @classmethod
    def open(cls, index_dir: str | Path, config: BM25Config | None = None) -> "ShardedBm25Retriever":
        return cls(ShardedIndexReader(index_dir), config)

    def _scatter(self, call) -> list:
        """``call(shard)`` for every shard, in shard order (in this process: one after the other)."""
        return [call(s) for s in self.shards]

    def score_terms(self, terms: list[str], term_weights: list[float] | None = None) -> np.ndarray:
        """(n_total,) float64 scores of every document, by global ordinal."""
        if not self.shards:
            return np.zeros(0, dtype=np.float64)
        return np.concatenate(self._scatter(lambda s: s.score_terms(terms, term_weights)))

    def score(self, query: str) -> np.ndarray:
        return self.score_terms(self.analyzer(query))

    def search(self, query: str, k: int = 10) -> Hits:
        return self.search_terms(self.analyzer(query), k)

    def search_terms(self, terms: list[str], k: int = 10) -> Hits:
        return self._gather(self._scatter(lambda s: s.search_terms(terms, k)), k)

    def boolean_and(self, query: str, k: int | None = None) -> Hits:
        return self._gather(self._scatter(lambda s: s.boolean_and(query, k)), k)

    def _gather(self, hits: list[Hits], k: int | None) -> Hits:
        return gather_hits(hits, self.reader.bases, self.reader.doc_id_array, k)

"""The query side of a sharded index served by several processes: `RemoteShardedRetriever` scatters a
query to `funnel serve --shard I` processes (`funnel.api.shard`) over HTTP and gathers their top k with
the in-process merge. The front's BM25 recall (`funnel serve --shard-urls`, `serve.shard_urls`), fed to
`funnel.ranking.serving.pipeline` in place of `Bm25Retriever.open`'s retriever.

It is a `funnel.index.searcher.ShardedBm25Retriever` whose shards are `ShardClient`s, so ids, scores
and tie order are the in-process sharded retriever's, which are the single index's: a shard answers
with shard-local ordinals and float64 scores written by ``json`` (the shortest repr, which reads back
to the same bits); the front adds each shard's base and merges by (score desc, global ordinal asc).

What the front still reads from the index folder (the same HOME, shared or copied): the top-level
manifest, global statistics and each shard's doc ids and lengths, memory-mapped, for the later stages
(document ids, ordinals, coarse features, RM3). It computes no BM25 score itself.

Failures: every query goes to all shards at once (a thread per shard from a small pool, one pooled
keep-alive HTTP client); the query waits at most ``serve.shard_timeout_s`` for all of them. A shard
that refuses the connection, errs, does not answer in time, or answers for another shard number or
index generation than the front's (a shard restarted on a rebuilt index, or URLs listed out of order)
raises `ShardError` naming the shard and its URL; the API answers it 503 (`funnel.api.app`), never a
hang. Nothing is retried and no partial result is returned: a missing shard would silently drop its
documents from the ranking. After a rebuild the shard servers are restarted by hand; the front's
`SearchService` loads the new generation by itself, retrying while the shards still serve the old one
(every 10 x ``serve.reload_check_s``, at least 10 s), so /search answers 503 until both agree.
"""
from __future__ import annotations

import concurrent.futures as cf
from pathlib import Path

import httpx
import numpy as np

from funnel.core.config import BM25Config
from funnel.core.errors import FunnelError
from funnel.index.searcher import Hits, IndexReader, ShardedBm25Retriever, ShardedIndexReader


class ShardError(FunnelError):
    """A shard server did not give a usable answer in time (down, too slow, erring, or serving another
    shard or generation); the message names the shard and its URL. A 503 at the API."""


def shard_urls(text: str) -> list[str]:
    """``serve.shard_urls`` as a list of base URLs (no trailing slash), in shard order."""
    return [u.strip().rstrip("/") for u in text.split(",") if u.strip()]


class ShardClient:
    """One `funnel serve --shard` process, seen as a shard's `Bm25Retriever` (`search_terms`,
    `score_terms`, `boolean_and` over shard-local ordinals), checked to serve `shard` of `generation`."""

    def __init__(self, url: str, shard: int, generation: int, n_total: int, http: httpx.Client):
        self.url, self.shard, self.generation, self.n_total = url, shard, generation, n_total
        self._http = http

    def _post(self, path: str, body: dict) -> dict:
        where = f"shard {self.shard} at {self.url}"
        try:
            resp = self._http.post(self.url + path, json=body)
        except httpx.TimeoutException:
            raise ShardError(f"{where} did not answer within {self._http.timeout.read} s") from None
        except httpx.HTTPError as exc:
            raise ShardError(f"{where} is not answering ({type(exc).__name__}: {exc}); "
                             f"start it with `funnel serve --shard {self.shard}`") from None
        try:
            data = resp.json()
        except ValueError:
            data = None
        if resp.status_code != 200 or not isinstance(data, dict):
            error = data.get("error") if isinstance(data, dict) else resp.text[:200]
            raise ShardError(f"{where} answered {resp.status_code}: {error}")
        if (data.get("shard"), data.get("generation")) != (self.shard, self.generation):
            raise ShardError(f"{where} serves shard {data.get('shard')} of index generation {data.get('generation')}"
                             f", the front expects shard {self.shard} of generation {self.generation}: list the "
                             "URLs in shard order; after a rebuild, restart every shard server (the front follows)")
        return data

    def search_terms(self, terms: list[str], k: int = 10) -> Hits:
        return self._hits(self._post("/shard/search", {"terms": terms, "k": k}))

    def boolean_and(self, query: str, k: int | None = None) -> Hits:
        return self._hits(self._post("/shard/search", {"query": query, "k": k, "mode": "and"}))

    def score_terms(self, terms: list[str], term_weights: list[float] | None = None) -> np.ndarray:
        """(n_total,) float64 scores of the shard's documents (the shard sends the non-zero ones)."""
        data = self._post("/shard/score", {"terms": terms, "weights": term_weights})
        scores = np.zeros(self.n_total, dtype=np.float64)
        scores[np.asarray(data["ords"], np.int64)] = np.asarray(data["scores"], np.float64)
        return scores

    @staticmethod
    def _hits(data: dict) -> Hits:
        return Hits(np.asarray(data["ords"], np.int64), np.asarray(data["scores"], np.float64), data["doc_ids"])


class RemoteShardedRetriever(ShardedBm25Retriever):
    """`ShardedBm25Retriever` over shard servers: the same methods, answers and merge; see the module
    docstring for what happens when a shard is down or slow. `close` ends its HTTP client and threads."""

    def __init__(self, reader: ShardedIndexReader, urls: list[str], config: BM25Config | None = None,
                 timeout_s: float = 5.0):
        n = len(reader.shards)
        if len(urls) != n:
            raise FunnelError(f"serve.shard_urls names {len(urls)} shard server(s) but {reader.dir} has {n} "
                              f"shards: list one `funnel serve --shard I` URL per shard, shard 0 first")
        self.timeout_s = timeout_s
        # a connection per shard for each of a few concurrent queries; more wait in the pool (within the timeout)
        self._http = httpx.Client(timeout=httpx.Timeout(timeout_s),
                                  limits=httpx.Limits(max_connections=16 * n, max_keepalive_connections=16 * n))
        self._pool = cf.ThreadPoolExecutor(max_workers=8 * n, thread_name_prefix="funnel-shard")
        generation = reader.manifest["generation"]
        clients = [ShardClient(url, i, generation, r.n_total, self._http)
                   for i, (url, r) in enumerate(zip(urls, reader.shards))]
        super().__init__(reader, config, shards=clients)

    @classmethod
    def open(cls, index_dir: str | Path, urls: str, config: BM25Config | None = None,
             timeout_s: float = 5.0) -> "RemoteShardedRetriever":
        """The front's retriever of the sharded index at `index_dir`, whose shards the servers at `urls` serve
        (``serve.shard_urls``: comma-separated, shard 0 first)."""
        reader = IndexReader(index_dir)
        if not isinstance(reader, ShardedIndexReader):
            raise FunnelError(f"serve.shard_urls is set but {index_dir} is a single index: build a sharded one "
                              "(`funnel pipeline index --shards N`), or leave serve.shard_urls empty")
        return cls(reader, shard_urls(urls), config, timeout_s)

    def _scatter(self, call) -> list:
        """``call(shard)`` for every shard at once; the answers in shard order, or the first `ShardError`."""
        futures = [self._pool.submit(call, s) for s in self.shards]
        done, pending = cf.wait(futures, timeout=self.timeout_s, return_when=cf.FIRST_EXCEPTION)
        for f in futures:  # the first failure seen (a shard still running when it came is not waited for)
            if f in done and f.exception() is not None:
                raise f.exception()
        if pending:
            late = next(s for f, s in zip(futures, self.shards) if f in pending)
            for f in pending:
                f.cancel()  # still queued: never sent; a request in flight ends at the client's timeout
            raise ShardError(f"shard {late.shard} at {late.url} did not answer within {self.timeout_s} s")
        return [f.result() for f in futures]

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._http.close()

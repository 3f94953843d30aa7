"""`funnel serve --shard I`: one shard of HOME's sharded index behind a small JSON API, scoring with the
whole collection's statistics (`funnel.index.searcher.open_shard`), so its BM25 scores are the single
index's for the same documents. Fed to a front (`funnel serve --shard-urls`), whose
`funnel.index.remote.RemoteShardedRetriever` scatters each query to every shard and gathers the top k.

Routes (ordinals are the shard's own, 0 .. n_total - 1; add the shard's base for the global ones):

- ``POST /shard/search`` ``{"terms": ["cell", "protein"], "k": 10}`` (analysed terms: what the front
  sends) or ``{"query": "cell proteins", "k": 10}`` (analysed here); ``"mode": "and"`` for boolean AND
  (``k`` may then be null: all) -> ``{"shard", "generation", "ords", "doc_ids", "scores"}``, best first,
  ties by lower ordinal.
- ``POST /shard/score`` ``{"terms": [...], "weights": [...] or null}`` -> every document the terms match:
  ``{"shard", "generation", "n_total", "ords", "scores"}`` (ascending ordinals), for the front's
  full-collection scores (a PageRank prior, RM3, the coarse ranker's ``bm25`` feature).
- ``GET /health`` -> ``{"status": "ok", "shard", "n_shards", "generation", "docs", "collection_docs"}``.

Scores are float64 written by ``json`` (shortest repr: read back, the same bits). Errors are
``{"error", "detail"}``: 422 for a bad body (as the main API), 413 for a body over 64 KiB. The shard
serves the generation it opened; after a rebuild, restart the shard servers (the front answers 503 for
a shard whose generation differs from its own until then).
"""
# No `from __future__ import annotations`: FastAPI must see the request models, not strings.
import json
import logging
from typing import Literal

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator

from funnel.api.app import _BodyLimitMiddleware, _validation_error
from funnel.core.config import Config
from funnel.core.errors import FunnelError
from funnel.index.builder import read_manifest
from funnel.index.searcher import Bm25Retriever, open_shard


log = logging.getLogger(__name__)

ACCEPTED = "terms or query, k, mode (/shard/search); terms, weights (/shard/score)"


class ShardSearch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    terms: list[str] | None = Field(None, description="analysed query terms (as the front's analyzer made them)")
    query: str | None = Field(None, description="query text, analysed by this shard (when no terms are sent)")
    k: int | None = Field(10, ge=1, description="results wanted (null: all, with mode 'and' only)")
    mode: Literal["bm25", "and"] = Field("bm25", description="'bm25': top k by BM25; 'and': boolean AND by BM25")

    @model_validator(mode="after")
    def _one_query(self):
        if (self.terms is None) == (self.query is None):
            raise ValueError("send either terms (analysed) or query (text), not both and not neither")
        if self.mode == "and" and self.query is None:
            raise ValueError("mode 'and' takes the query text")
        if self.mode == "bm25" and self.k is None:
            raise ValueError("k is required with mode 'bm25'")
        return self


class ShardScore(BaseModel):
    model_config = ConfigDict(extra="forbid")
    terms: list[str] = Field(description="analysed query terms")
    weights: list[float] | None = Field(None, description="one weight per term (null: each counts once)")


def _json(data: dict) -> Response:
    """Plain ``json.dumps``: FastAPI's encoder walks every float of a long list in Python first."""
    return Response(json.dumps(data), media_type="application/json")


def create_shard_app(retriever: Bm25Retriever, shard: int, manifest: dict) -> FastAPI:
    """The shard server's app over `retriever` (shard `shard` of the sharded index whose top-level
    manifest is `manifest`), shared by every request thread (the retriever is read-only)."""
    generation, n_shards = manifest["generation"], len(manifest["shards"])
    head = {"shard": shard, "generation": generation}
    app = FastAPI(title=f"Funnel shard server (shard {shard} of {n_shards})", version="1",
                  docs_url=None, redoc_url=None)
    app.add_middleware(_BodyLimitMiddleware)

    @app.exception_handler(RequestValidationError)
    async def _on_validation(request: Request, exc: RequestValidationError):
        return _validation_error(list(exc.errors()), accepted=ACCEPTED)

    @app.exception_handler(FunnelError)
    async def _on_funnel(request: Request, exc: FunnelError):
        return JSONResponse(status_code=422, content={"error": str(exc), "detail": None})

    @app.post("/shard/search", summary="This shard's top k (shard-local ordinals)")
    def search(req: ShardSearch):
        if req.mode == "and":
            hits = retriever.boolean_and(req.query, req.k)
        else:
            terms = req.terms if req.terms is not None else retriever.analyzer(req.query)
            hits = retriever.search_terms(terms, req.k)
        return _json({**head, "ords": hits.ords.tolist(), "doc_ids": hits.doc_ids,
                      "scores": hits.scores.astype(float).tolist()})

    @app.post("/shard/score", summary="Scores of every document the terms match (shard-local ordinals)")
    def score(req: ShardScore):
        scores = retriever.score_terms(req.terms, req.weights)  # (n_total,) float64
        ords = np.flatnonzero(scores)
        return _json({**head, "n_total": int(retriever.reader.n_total), "ords": ords.tolist(),
                      "scores": scores[ords].tolist()})

    @app.get("/health", summary="Which shard, which generation, how many documents")
    def health():
        return _json({"status": "ok", **head, "n_shards": n_shards, "docs": int(retriever.reader.n_docs),
                      "collection_docs": int(manifest["stats"]["n_docs"])})

    return app


def serve_shard(config: Config, shard: int, *, log_level: str = "info") -> None:
    """Open shard `shard` of ``paths.index`` and run uvicorn on ``serve.host:serve.port`` until interrupted."""
    import uvicorn

    manifest = read_manifest(config.paths.index)  # read once: the generation served and named in every answer
    retriever = open_shard(config.paths.index, shard, config.bm25, manifest)  # fails here, before the banner
    retriever.search("warm up", 1)  # the analyzer's stemmer, the first postings: not on the front's first query
    s = config.serve
    print(f"shard {shard} of {len(manifest['shards'])} ({retriever.reader.n_docs} docs, index generation "
          f"{manifest['generation']}): http://{s.host}:{s.port}/shard/search  http://{s.host}:{s.port}/health",
          flush=True)
    uvicorn.run(create_shard_app(retriever, shard, manifest), host=s.host, port=s.port, log_level=log_level)

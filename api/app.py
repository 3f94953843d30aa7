"""HTTP boundary of the query API (FastAPI): `create_app(service, rec)` wires the loaded `SearchService`
to GET/POST /search and GET /doc/{id}, the loaded `RecService` (`funnel.ranking.rec.service`) to GET/POST
/recommend, and both to /health and /metrics (Prometheus). Fed by `funnel serve`.

Validation happens here, once, with pydantic: an empty or oversized query, k out of bounds, an
unknown profile, an unknown parameter (body field or query-string key) or a body that is not JSON
gets a 4xx whose JSON names the field and what was expected; a 500 only ever means a bug.

Status codes of /recommend, the same families as /search: 422 for anything wrong in the request (k
out of 1..rec.max_k, a missing user or history, an empty history, an item id the catalogue does not
hold, an unknown parameter), 404 for a user id the interaction log does not hold (GET, or POST
without a history), and 404 too when this home has no fitted recommendation funnel (search keeps
working; the message says what to build). A home with a fitted funnel and no search index serves
/recommend alone; /search and /doc answer 404 saying what to build. Not 503: nothing here is
temporary, and a 5xx stays reserved for bugs (the fuzz test's invariant). The one exception: a front
over shard servers (``serve.shard_urls``) answers /search 503 naming the shard and its URL when one is
down, slow or serving another generation (`funnel.index.remote.ShardError`).
"""
# No `from __future__ import annotations`: FastAPI must see the per-app request model, not a string.
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from funnel.api import schemas
from funnel.api.service import offered_profiles, SearchResult, SearchService
from funnel.core.config import apply_overrides, Config
from funnel.core.errors import FunnelError, InputError
from funnel.index.remote import ShardError


log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024  # a search body is a few hundred bytes; anything far larger is refused with a 413
_LATENCY_BUCKETS = (.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10)


MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


class Metrics:
    """Prometheus metrics of one app, in their own registry (several apps can live in one process).

    Under ``funnel serve --workers N`` every worker is its own process: `serve` points
    ``PROMETHEUS_MULTIPROC_DIR`` at a fresh folder, each worker's values go to files there, and
    /metrics, whichever worker answers it, reports the sum over all workers.
    """

    def __init__(self, service: SearchService | None):
        self.registry = CollectorRegistry()
        self.multiprocess = bool(os.environ.get(MULTIPROC_ENV))
        self.requests = Counter("funnel_http_requests_total", "HTTP requests by route and status",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("funnel_http_request_seconds", "HTTP request latency by route", ["route"],
                                 buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.stage = Histogram("funnel_stage_seconds", "time spent in each ranking stage",
                               ["profile", "stage"], buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.results = Histogram("funnel_search_results", "results returned per search",
                                 buckets=(0, 1, 5, 10, 20, 50, 100), registry=self.registry)
        self.rec_stage = Histogram("funnel_rec_stage_seconds", "time spent in each recommendation stage",
                                   ["stage"], buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.service = service
        self.docs = Gauge("funnel_index_docs", "documents in the loaded index", registry=self.registry,
                          multiprocess_mode="max")  # every worker loads the same index
        self.docs.set(service.n_docs if service is not None else 0)

    def exposition(self) -> bytes:
        """The text format of every metric, summed over the workers in multiprocess mode."""
        if not self.multiprocess:
            return generate_latest(self.registry)
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)

    def observe_search(self, result: SearchResult) -> None:
        self.docs.set(self.service.n_docs)  # a newly published index may have been swapped in
        self.results.observe(len(result.hits))
        if result.candidates is not None:
            for t in result.candidates.trace:
                self.stage.labels(result.profile, t.stage).observe(t.ms / 1000)

    def observe_recommend(self, ms: dict[str, float]) -> None:
        for stage, v in ms.items():
            self.rec_stage.labels(stage).observe(v / 1000)


class _BodyLimitMiddleware:
    """Refuses request bodies over MAX_BODY_BYTES (by Content-Length, or while streaming) with a 413."""

    def __init__(self, app, limit: int = MAX_BODY_BYTES):
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            return await self._refuse(send)
        seen = 0

        started = False

        async def tracking_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        async def limited_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    # an HTTPException is the one error FastAPI's body reader passes on as it is (any other
                    # becomes a 400 "error parsing the body"): a chunked body without Content-Length lands here
                    raise HTTPException(413, self.message)
            return message

        try:
            await self.app(scope, limited_receive, tracking_send)
        except HTTPException as exc:  # raised outside a route's body reader
            if exc.status_code != 413 or started:
                raise
            await self._refuse(send)

    @property
    def message(self) -> str:
        return f"request body over {self.limit} bytes"

    async def _refuse(self, send):
        body = json.dumps({"error": self.message, "detail": None}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class _HeadMiddleware:
    """HEAD is GET without the body (RFC 9110): FastAPI routes declare GET only and would answer 405."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "HEAD":
            return await self.app(scope, receive, send)

        async def headers_only(message):
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, headers_only)


def _allowed_methods(app: FastAPI, scope) -> list[str]:
    """Every method some route accepts at this path (HEAD wherever GET is): the Allow header of a 405."""
    from starlette.routing import Match

    methods: set[str] = set()
    for route in app.router.routes:
        route_methods = getattr(route, "methods", None)
        if route_methods and route.matches(scope)[0] != Match.NONE:
            methods |= set(route_methods)
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)


class _MetricsMiddleware:
    """Counts every request by its route template (not the raw path: unknown paths share one label)."""

    def __init__(self, app, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = getattr(scope.get("route"), "path", None) or "<unmatched>"
            self.metrics.requests.labels(scope["method"], route, str(status["code"])).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - t0)


# pydantic names the branch of a union that failed ("history.0.constrained-str"); the field is what a client needs
_UNION_BRANCHES = {"constrained-str", "str", "int", "function-before[_not_bool(), int]"}


def _field(loc: tuple | list) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path"):
        parts = parts[1:]
    parts = [p for p in parts if p not in _UNION_BRANCHES]
    return ".".join(parts) or "body"


ACCEPTED = {"/search": "q, k, profile, explain", "/recommend": "user, history (POST), k, explain"}


def _validation_error(errors: list[dict[str, Any]], max_k: int | None = None,
                      accepted: str = ACCEPTED["/search"]) -> JSONResponse:
    detail, msgs = [], []
    for e in errors:
        where = _field(e.get("loc", ()))
        if e.get("type") == "json_invalid":
            where = "body"
            msg = f"request body is not valid JSON ({e.get('ctx', {}).get('error', 'decode error')})"
        elif e.get("type") == "extra_forbidden":
            msg = f"unknown parameter {where!r}; accepted: {accepted}"
        elif e.get("type") == "no_parameters":
            msg = str(e.get("msg"))
        elif e.get("type") == "missing":
            msg = f"{where}: required parameter is missing"
        elif e.get("type") in ("int_parsing_size", "number_too_long"):
            wanted = f"k from 1 to {max_k}" if max_k else "a number of sensible size"
            msg = f"{where}: a number with thousands of digits; expected {wanted}"
        else:
            msg = f"{where}: {e.get('msg', 'invalid value')}"
        msgs.append(msg)
        detail.append({"field": where, "type": str(e.get("type", "")), "message": msg})
    return JSONResponse(status_code=422, content={"error": "; ".join(msgs), "detail": detail})


def _json_hits(result: SearchResult, explain: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "query": result.query, "k": result.k, "profile": result.profile, "took_ms": round(result.took_ms, 3),
        "hits": [h.__dict__ for h in result.hits], "stages": None, "features": None,
    }
    if explain:
        out["stages"] = [{"stage": t.stage, "ms": round(t.ms, 3), "n_candidates": t.n_candidates,
                          "rows": [r.__dict__ for r in t.rows]} for t in result.stages]
        out["features"] = result.features
    return out


def _offline_docs(app: FastAPI) -> None:
    """Swagger UI at ``/docs`` from the `swagger-ui-bundle` package's files, served by this app.

    FastAPI's own ``/docs`` loads its JavaScript and CSS from a CDN, which leaves the page blank on a
    machine without internet (the usual place a search engine runs).
    """
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.staticfiles import StaticFiles
    from swagger_ui_bundle import swagger_ui_path

    app.mount(DOCS_ASSETS, StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def _docs():
        return get_swagger_ui_html(openapi_url=app.openapi_url, title=f"{app.title}: docs",
                                   swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
                                   swagger_favicon_url=f"{DOCS_ASSETS}/favicon-32x32.png")


DOCS_ASSETS = "/docs-assets"


def create_app(service: SearchService | None, rec=None, *, config: Config | None = None,
               rec_problem: str | None = None) -> FastAPI:
    """The FastAPI app over opened services (loaded once, shared by every request thread).

    service: the search side, or None for a home that only recommends (/search and /doc answer 404;
    then ``config`` is required); rec: a `funnel.ranking.rec.service.RecService`, or None (/recommend
    answers 404 saying ``rec_problem``, or what to build)."""
    if service is None and (rec is None or config is None):
        raise ValueError("create_app needs a search service, or a recommendation service and the config")
    config = config or service.config
    serve = config.serve
    profiles = service.profiles if service is not None else offered_profiles(config)[:1]
    SearchRequest = schemas.search_request_model(serve, profiles, service.default_profile if service else profiles[0])
    # the service's limits: k can be no longer than the fine stage's list (rec.max_k capped at coarse_k)
    max_k, default_k = (rec.max_k, rec.default_k) if rec is not None else (config.rec.max_k, config.rec.default_k)
    RecQuery, RecBody = schemas.recommend_models(max_k, default_k)
    metrics = Metrics(service)
    started = time.time()
    errors = {422: {"model": schemas.ErrorResponse, "description": "invalid parameters"}}
    unavailable = {404: {"model": schemas.ErrorResponse, "description": "not served by this home (what to build)"}}

    parts = []
    if service is not None:
        parts.append(f"Search a Funnel index through its ranking funnel (profiles: {', '.join(service.profiles)}; "
                     f"stages: {' -> '.join(service.stage_names())}).")
    parts.append("Recommend items for a user of the interaction log (GET /recommend) or for a history sent "
                 "in the body (POST /recommend, cold start): recall -> coarse -> fine -> rerank."
                 + ("" if rec is not None else " Not served by this home: " + _no_rec_message(config, rec_problem)))
    app = FastAPI(title="Funnel search API", version="1", docs_url=None, redoc_url=None,  # /docs: see _offline_docs
                  description=" ".join(parts))
    app.state.service = service
    app.state.rec = rec
    app.state.metrics = metrics
    _offline_docs(app)
    app.add_middleware(_BodyLimitMiddleware)
    app.add_middleware(_HeadMiddleware)
    app.add_middleware(_MetricsMiddleware, metrics=metrics)  # added last = outermost: counts the 413s too

    def max_k_of(request: Request) -> int:
        return max_k if request.url.path == "/recommend" else serve.max_k

    @app.exception_handler(RequestValidationError)
    async def _on_validation(request: Request, exc: RequestValidationError):
        return _validation_error(list(exc.errors()), max_k_of(request),
                                 ACCEPTED.get(request.url.path, ACCEPTED["/search"]))

    @app.exception_handler(InputError)
    async def _on_input(request: Request, exc: InputError):
        return JSONResponse(status_code=422, content={"error": str(exc), "detail": None})

    @app.exception_handler(StarletteHTTPException)
    async def _on_http(request: Request, exc: StarletteHTTPException):
        if exc.status_code == 400 and exc.detail == "There was an error parsing the body":
            cause = exc.__cause__
            if isinstance(cause, ValueError) and "digits" in str(cause):  # Python's int-from-text limit
                return _validation_error([{"type": "number_too_long", "loc": ("body",)}], max_k_of(request))
            return _validation_error([{"type": "json_invalid", "loc": ("body",),
                                       "ctx": {"error": "not UTF-8 JSON text"}}])  # bytes FastAPI cannot decode
        message = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:
            allowed = _allowed_methods(app, request.scope)
            headers["Allow"] = ", ".join(allowed)
            message = f"method {request.method} is not allowed on {request.url.path}; allowed: {headers['Allow']}"
        return JSONResponse(status_code=exc.status_code, content={"error": message, "detail": None},
                            headers=headers or None)

    @app.exception_handler(ShardError)
    async def _on_shard(request: Request, exc: ShardError):
        log.warning("search failed: %s", exc)
        return JSONResponse(status_code=503, content={"error": str(exc), "detail": None})

    @app.exception_handler(FunnelError)
    async def _on_funnel(request: Request, exc: FunnelError):
        log.exception("request failed: %s", exc)
        return JSONResponse(status_code=500, content={"error": str(exc), "detail": None})

    def search_service() -> SearchService:
        if service is None:
            raise StarletteHTTPException(404, f"search is not served: no index in {config.paths.index}; build one "
                                              "(`funnel index` or `funnel build`) and restart `funnel serve`")
        return service

    def run_search(req) -> dict[str, Any]:
        result = search_service().search(req.q, k=req.k, profile=req.profile, explain=req.explain)
        metrics.observe_search(result)
        return _json_hits(result, req.explain)

    async def search(req) -> dict[str, Any]:
        # BM25 alone is a short burst of CPU: run it on the event loop, since a worker thread's hand-off cost
        # more than the search; a model or a remote shard waits in a thread (`SearchService.runs_on_loop`)
        if service is not None and service.runs_on_loop(req.profile):
            return run_search(req)
        return await run_in_threadpool(run_search, req)

    def no_query_params(request: Request) -> None:
        if request.query_params:
            names = ", ".join(sorted(set(request.query_params.keys())))
            raise RequestValidationError([{"type": "no_parameters", "loc": ("query", names),
                                           "msg": f"unknown parameter(s) {names}: this endpoint takes none"}])

    @app.get("/search", response_model=schemas.SearchResponse, responses={**errors, **unavailable},
             summary="Search (parameters in the query string)")
    async def search_get(req: Annotated[SearchRequest, Query()]):  # type: ignore[valid-type]
        return await search(req)

    @app.post("/search", response_model=schemas.SearchResponse,
              responses={413: {"model": schemas.ErrorResponse, "description": "body too large"}, **errors,
                         **unavailable},
              summary="Search (parameters as a JSON body)")
    async def search_post(req: SearchRequest):  # type: ignore[valid-type]
        return await search(req)

    @app.get("/doc/{doc_id:path}", response_model=schemas.DocResponse,
             responses={404: {"model": schemas.ErrorResponse, "description": "no such document, or no search "
                                                                          "index in this home"}, **errors},
             summary="One stored document")
    def get_doc(doc_id: str, request: Request):
        no_query_params(request)
        service = search_service()
        doc = service.document(doc_id)
        if doc is None:
            raise StarletteHTTPException(404, f"no document with id {doc_id!r}")
        return {"doc_id": doc.doc_id, "url": doc.url, "title": doc.title, "text": doc.text,
                "source": doc.source, "fetched_at": doc.fetched_at,
                "outlinks": [{"url": link.url, "anchor": link.anchor} for link in service.store.outlinks(doc_id)],
                "meta": doc.meta}

    # -- recommendation ---------------------------------------------------
    rec_errors = {
        404: {"model": schemas.ErrorResponse, "description": "a user id the interaction log does not hold, or "
              "no recommendation funnel in this home (the message says which, and what to do)"},
        422: {"model": schemas.ErrorResponse, "description": "invalid parameters: k out of range, a missing "
              "user or history, an empty history, an unknown item id, an unknown parameter"},
        **unavailable}

    def run_recommend(user: str | None, history: list[str] | None, k: int, explain: bool) -> dict[str, Any]:
        if rec is None:
            raise StarletteHTTPException(404, _no_rec_message(config, rec_problem))
        if history is None and not rec.known_user(user):
            raise StarletteHTTPException(404, f"no user with id {user!r} in the interaction log; send their "
                                              "history with POST /recommend for a recommendation (cold start)")
        t0 = time.perf_counter()
        out = rec.recommend(user=user, history=history, k=k, explain=explain)  # one at a time: its own lock
        metrics.observe_recommend(out.get("ms", {}))
        return {"user": out.get("user", user), "k": out.get("k", k),
                "took_ms": round(1e3 * (time.perf_counter() - t0), 3), "items": out["items"],
                "ms": {s: round(float(v), 3) for s, v in out.get("ms", {}).items()},
                "stages": out.get("stages") if explain else None, "trace": out.get("trace") if explain else None}

    @app.get("/recommend", response_model=schemas.RecommendResponse, responses=rec_errors,
             summary="Recommend for a known user (parameters in the query string)")
    def recommend_get(req: Annotated[RecQuery, Query()]):  # type: ignore[valid-type]
        """The k items to show a user of the interaction log, from their whole history (items they saw never
        come back). 404 for a user the log does not hold (send a history with POST instead), 422 for k out
        of range or an unknown parameter; 404 also when the home has no fitted recommendation funnel."""
        return run_recommend(req.user, None, req.k, req.explain)

    @app.post("/recommend", response_model=schemas.RecommendResponse,
              responses={413: {"model": schemas.ErrorResponse, "description": "body too large"}, **rec_errors},
              summary="Recommend for a history (cold start) or a known user (parameters as a JSON body)")
    def recommend_post(req: RecBody):  # type: ignore[valid-type]
        """With ``history`` (item ids, oldest first), the k items for that history, whoever sent it (a user
        the system has not seen: cold start; ``user`` only labels the answer). Without it, the known
        ``user``'s history from the log, as GET. 422 for an empty history, an item id the catalogue does not
        hold, neither user nor history, or k out of range; 404 for an unknown user without a history, or
        when the home has no fitted recommendation funnel."""
        return run_recommend(req.user, req.history, req.k, req.explain)

    @app.get("/health", response_model=schemas.HealthResponse, responses=errors, summary="Liveness and what is loaded")
    def health(request: Request):
        no_query_params(request)
        rec_loaded = rec is not None
        if service is None:
            return {"status": "ok", "docs": 0, "index_generation": None, "profiles": [], "stages": [],
                    "pipeline": False, "recommend": rec_loaded, "uptime_s": round(time.time() - started, 3)}
        service.check_for_new_index()  # a probe alone also brings a newly published index in
        return {"status": "ok", "docs": service.n_docs, "index_generation": service.index_generation(),
                "profiles": list(service.profiles), "stages": service.stage_names(),
                "pipeline": service.funnel_loaded, "recommend": rec_loaded,
                "uptime_s": round(time.time() - service.loaded_at, 3)}

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    def prometheus_metrics():
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    return app


def _no_rec_message(config: Config, problem: str | None = None) -> str:
    if problem:
        return f"recommendation is not served: {problem}"
    return (f"recommendation is not served: no fitted funnel in {config.paths.rec_funnel}; ingest a log "
            "(`funnel ingest movielens`), build it (`funnel build --task rec`) and restart `funnel serve`")


def open_services(config: Config, *, use_funnel: bool = True):
    """-> (SearchService or None, RecService or None, why recommendation is off or None).

    Search needs an index, recommendation a fitted funnel (``paths.rec_funnel``) and the store's
    interaction log. A home with neither is an `InputError` naming both builds; a funnel that is there
    but cannot be loaded (its log was removed, say) is logged and reported by /recommend, so search keeps
    serving; with no index as well, it is the error."""
    has_index = Path(config.paths.index, "manifest.json").exists()
    rec, problem = None, None
    if Path(config.paths.rec_funnel, "funnel.json").exists():
        from funnel.ranking.rec.service import RecService  # torch and LightGBM: only when a funnel is there

        try:
            rec = RecService.load(config)
        except InputError as exc:
            if not has_index:
                raise
            problem = str(exc)
            log.warning("recommendation not served: %s", exc)
    if not has_index and rec is None:
        raise InputError(f"no index in {config.paths.index} and no recommendation funnel in "
                         f"{config.paths.rec_funnel}: build one first (`funnel index` or `funnel pipeline index` "
                         "for search; `funnel ingest movielens` + `funnel build --task rec` for recommendation)")
    service = SearchService.open(config, use_funnel=use_funnel) if has_index else None
    return service, rec, problem


def app_from_env() -> FastAPI:
    """Factory for uvicorn workers (``--workers N``): each process loads its own services from the
    config that `funnel serve` put in ``FUNNEL_CONFIG_JSON``."""

    data = json.loads(os.environ["FUNNEL_CONFIG_JSON"])
    config = apply_overrides(Config(), data, "FUNNEL_CONFIG_JSON")
    service, rec, problem = open_services(config, use_funnel=os.environ.get("FUNNEL_USE_FUNNEL", "1") == "1")
    limit_blas_threads()
    return create_app(service, rec, config=config, rec_problem=problem)


def limit_blas_threads():
    """One thread for every BLAS library loaded in a server process (numpy's, SciPy's and FAISS's
    OpenBLAS): the matrix products of one request are small (its candidates' vectors), and OpenBLAS's
    worker threads spin for a while after each one, taking CPU that concurrent requests needed
    (`docs/bugs-and-fixes.md`). Requests running side by side are the server's parallelism.
    Called once the services are open, so every library they load is covered. Returns the limiter
    (``restore_original_limits()`` undoes it)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1, user_api="blas")


def serve(config, *, use_funnel: bool = True, log_level: str = "info") -> None:
    """Load the service once and run uvicorn on ``serve.host:serve.port`` until interrupted."""
    import uvicorn

    s = config.serve
    banner = (f"API: http://{s.host}:{s.port}/search?q=...  http://{s.host}:{s.port}/recommend?user=...  "
              f"(OpenAPI docs: http://{s.host}:{s.port}/docs)")
    if s.workers > 1:
        print(banner, flush=True)
        os.environ["FUNNEL_CONFIG_JSON"] = json.dumps(config.to_dict())
        os.environ["FUNNEL_USE_FUNNEL"] = "1" if use_funnel else "0"
        metrics_dir = tempfile.mkdtemp(prefix="funnel-metrics-")  # one per server: no stale counts
        os.environ[MULTIPROC_ENV] = metrics_dir
        try:
            uvicorn.run("funnel.api.app:app_from_env", factory=True, host=s.host, port=s.port, workers=s.workers,
                        log_level=log_level)
        finally:
            shutil.rmtree(metrics_dir, ignore_errors=True)
        return
    service, rec, problem = open_services(config, use_funnel=use_funnel)  # fails here, before the banner
    limit_blas_threads()
    app = create_app(service, rec, config=config, rec_problem=problem)
    print(banner, flush=True)
    uvicorn.run(app, host=s.host, port=s.port, log_level=log_level)

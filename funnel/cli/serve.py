"""`funnel serve`: the query API over the home's index and trained models."""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("serve", help="serve the query API (FastAPI + uvicorn; OpenAPI docs at /docs)")
    p.add_argument("--host", help="interface to bind (config serve.host; default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (config serve.port; default 8000)")
    p.add_argument("--workers", type=int, help="uvicorn processes, each loading the index once (serve.workers)")
    p.add_argument("--bm25-only", action="store_true", help="serve BM25 recall alone, ignoring trained models")
    p.set_defaults(handler=_serve)


def _serve(args, config) -> int:
    from dataclasses import replace

    from funnel.api.app import serve

    changes = {k: v for k, v in (("host", args.host), ("port", args.port), ("workers", args.workers)) if v is not None}
    config = replace(config, serve=replace(config.serve, **changes))
    serve(config, use_funnel=not args.bm25_only, log_level="warning" if args.quiet else "info")
    return 0

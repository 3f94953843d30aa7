"""`funnel serve`: the query API over the home's index and trained models."""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("serve", help="serve the query API (FastAPI + uvicorn; OpenAPI docs at /docs)")
    p.add_argument("--host", help="interface to bind (config serve.host; default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (config serve.port; default 8000)")
    p.add_argument("--workers", type=int, help="uvicorn processes, each loading the index once (serve.workers)")
    p.add_argument("--bm25-only", action="store_true", help="serve BM25 recall alone, ignoring trained models")
    p.add_argument("--shard", type=int, metavar="I",
                   help="serve only shard I of HOME's sharded index (global statistics) to a front: "
                        "POST /shard/search, GET /health")
    p.add_argument("--shard-urls", metavar="URL,URL,...",
                   help="be the front of `funnel serve --shard I` processes, one URL per shard, shard 0 first: "
                        "BM25 recall scattered to them (serve.shard_urls)")
    p.set_defaults(handler=_serve)


def _serve(args, config) -> int:
    from dataclasses import replace

    from funnel.core.config import validate_config
    from funnel.core.errors import FunnelError

    changes = {k: v for k, v in (("host", args.host), ("port", args.port), ("workers", args.workers),
                                 ("shard_urls", args.shard_urls)) if v is not None}
    config = validate_config(replace(config, serve=replace(config.serve, **changes)), "funnel serve")
    log_level = "warning" if args.quiet else "info"
    if args.shard is not None:
        if config.serve.shard_urls or (args.workers or 1) > 1 or args.bm25_only:
            raise FunnelError("--shard serves one shard to a front: it takes neither --shard-urls nor "
                              "--workers nor --bm25-only (start one `funnel serve --shard I` per shard)")
        from funnel.api.shard import serve_shard

        serve_shard(config, args.shard, log_level=log_level)
        return 0
    from funnel.api.app import serve

    serve(config, use_funnel=not args.bm25_only, log_level=log_level)
    return 0

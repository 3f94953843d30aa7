"""Subcommands of the index: `funnel index` (`funnel search` lives in `funnel.cli.search`)."""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("index", help="index the document store (new documents become a new segment)")
    p.add_argument("--rebuild", action="store_true", help="rebuild from scratch as one segment")
    p.add_argument("--merge", action="store_true", help="merge all segments into one afterwards")
    p.set_defaults(handler=_index)


def _index(args, config) -> int:
    import time

    from funnel.core.store import DocumentStore
    from funnel.index.analyze import Analyzer
    from funnel.index.builder import IndexWriter, build_index

    t0 = time.perf_counter()
    analyzer = Analyzer(config.analyzer)
    with DocumentStore(config.paths.store, readonly=True) as store:
        manifest = build_index(store, config.paths.index, analyzer, incremental=not args.rebuild,
                               merge_max_segments=config.index.merge_max_segments, progress=not args.quiet)
    if args.merge:
        manifest = IndexWriter(config.paths.index, analyzer).merge()
    print(f"index {config.paths.index}: generation {manifest['generation']}, "
          f"{len(manifest['segments'])} segment(s), {time.perf_counter() - t0:.1f}s")
    return 0


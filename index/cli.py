"""Subcommands of the index: `funnel index`, `funnel search`."""
from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser("index", help="index the document store (new documents become a new segment)")
    p.add_argument("--rebuild", action="store_true", help="rebuild from scratch as one segment")
    p.add_argument("--merge", action="store_true", help="merge all segments into one afterwards")
    p.set_defaults(handler=_index)

    s = sub.add_parser("search", help="query the index from the command line")
    s.add_argument("query")
    s.add_argument("-k", type=int, default=10, help="results to show (default 10)")
    s.add_argument("--mode", choices=["bm25", "and"], default="bm25",
                   help="bm25 ranking (default) or boolean AND of every term")
    s.add_argument("--json", action="store_true", help="print JSON lines")
    s.set_defaults(handler=_search)


def _index(args, config) -> int:
    import time

    from funnel.store import DocumentStore
    from index.analyze import Analyzer
    from index.builder import IndexWriter, build_index

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


def _search(args, config) -> int:
    from funnel.errors import FunnelError
    from funnel.store import DocumentStore
    from index.searcher import Bm25Retriever

    if args.k < 1:
        raise FunnelError("-k must be at least 1")
    retriever = Bm25Retriever.open(config.paths.index, config.bm25)
    hits = retriever.search(args.query, args.k) if args.mode == "bm25" else retriever.boolean_and(args.query, args.k)
    with DocumentStore(config.paths.store, readonly=True) as store:
        docs = store.get_many(hits.doc_ids)
    if not len(hits):
        print("no results")
    for rank, (doc_id, score) in enumerate(zip(hits.doc_ids, hits.scores.tolist()), 1):
        doc = docs.get(doc_id)
        title = doc.title if doc else ""
        if args.json:
            print(json.dumps({"rank": rank, "doc_id": doc_id, "score": round(score, 4), "title": title,
                              "url": doc.url if doc else None}, ensure_ascii=False))
        else:
            print(f"{rank:3d}. {score:8.3f}  {doc_id}  {title[:90]}")
    return 0

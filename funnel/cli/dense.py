"""Dense recall subcommands: `funnel embed` (store -> vector index) and `funnel eval-recall` (BM25 / dense /
hybrid recall on judgements); `funnel train dual-encoder` is in `funnel.cli.train`.
The logic lives in `funnel.ranking.models.dual_encoder` and `funnel.ranking.serving.recall`."""
from __future__ import annotations

from funnel.cli.search import add_judgement_args


def register(sub) -> None:
    e = sub.add_parser("embed", help="encode the store's documents into the vector index (HOME/index/dense)")
    e.add_argument("--model", help="dual-encoder folder or 'minilm' (dense.model; default: "
                                   "HOME/models/dual-encoder if trained, else minilm)")
    e.add_argument("--rebuild", action="store_true", help="re-encode every document (else only new ones)")
    e.set_defaults(handler=_embed)

    r = sub.add_parser("eval-recall", help="evaluate BM25 / dense / hybrid recall on a BEIR folder's judgements")
    add_judgement_args(r)
    r.add_argument("--route", choices=["bm25", "dense", "hybrid", "all"], default="all")
    r.add_argument("--model", help="query encoder (dense.model; must match the index's document encoder)")
    r.add_argument("-k", type=int, default=1000, help="candidates per query (default 1000)")
    r.set_defaults(handler=_eval_recall)


def _embed(args, config) -> int:
    from funnel.ranking.models.dual_encoder import embed_store

    manifest = embed_store(config, args.model, rebuild=args.rebuild, progress=not args.quiet)
    print(f"vector index {config.paths.dense_index}: generation {manifest['generation']}, {manifest['count']} "
          f"vectors of dimension {manifest['dim']} ({len(manifest['parts'])} part(s)), "
          f"model {manifest['meta'].get('model')}")
    return 0


def _eval_recall(args, config) -> int:
    from dataclasses import replace

    from funnel.ranking.evaluate import format_table
    from funnel.ranking.serving.recall import evaluate_recall

    if args.model:
        config = replace(config, dense=replace(config.dense, model=args.model))
    routes = ["bm25", "dense", "hybrid"] if args.route == "all" else [args.route]
    rows = evaluate_recall(config, args.data, args.split, routes, k=args.k, progress=not args.quiet)
    print(format_table(rows, ["route", "queries", "nDCG@10", "Recall@100", "Recall@1000", "ms/query"]))
    return 0

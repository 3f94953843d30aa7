"""Subcommands of ranking: `funnel eval` (and train, prune)."""
from __future__ import annotations


def register(sub) -> None:
    e = sub.add_parser("eval", help="evaluate retrieval on a BEIR folder's judgements")
    e.add_argument("--data", required=True, help="BEIR folder holding queries.jsonl and qrels/")
    e.add_argument("--split", default="dev", help="judgements to use: qrels/SPLIT.tsv (default dev)")
    e.add_argument("--retriever", choices=["bm25", "tfidf"], default="bm25")
    e.add_argument("-k", type=int, default=1000, help="results per query (default 1000)")
    e.add_argument("--run-file", help="TREC run output (default HOME/runs/RETRIEVER-SPLIT.trec)")
    e.set_defaults(handler=_eval)

    train = sub.add_parser("train", help="train a model of the funnel")
    models = train.add_subparsers(dest="model", metavar="MODEL", required=True)
    for add_trainer in TRAINERS:
        add_trainer(models)


def _eval(args, config) -> int:
    from dataclasses import replace
    from pathlib import Path

    from ranking.evaluate import evaluate_retriever

    bm25 = replace(config.bm25, scorer="tfidf" if args.retriever == "tfidf" else "bm25")
    run_file = Path(args.run_file) if args.run_file else Path(config.paths.home) / "runs" / f"{args.retriever}-{args.split}.trec"
    metrics = evaluate_retriever(config.paths.index, bm25, args.data, args.split, k=args.k, run_file=run_file,
                                 progress=not args.quiet)
    print(f"{args.retriever} on {args.data} [{args.split}], {metrics.pop('queries')} queries")
    for name, value in metrics.items():
        print(f"  {name:12s} {value:.4f}")
    print(f"run written to {run_file}")
    return 0


# One function per trainable model, each adding `funnel train NAME` to the given subparsers.
TRAINERS: list = []
from ranking.cli_dense import add_trainer as add_dual_encoder  # noqa: E402  (funnel train dual-encoder)
TRAINERS.append(add_dual_encoder)

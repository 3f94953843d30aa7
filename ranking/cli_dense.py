"""Dense recall subcommands: `funnel embed` (store -> vector index), `funnel eval-recall` (BM25 / dense /
hybrid recall on judgements) and `funnel train dual-encoder` (added through `ranking.cli.TRAINERS`).
The logic lives in `ranking.dual_encoder`, `ranking.train_dense` and `ranking.recall`."""
from __future__ import annotations


def register(sub) -> None:
    e = sub.add_parser("embed", help="encode the store's documents into the vector index (HOME/index/dense)")
    e.add_argument("--model", help="dual-encoder folder or 'minilm' (dense.model; default: "
                                   "HOME/models/dual-encoder if trained, else minilm)")
    e.add_argument("--rebuild", action="store_true", help="re-encode every document (else only new ones)")
    e.set_defaults(handler=_embed)

    r = sub.add_parser("eval-recall", help="evaluate BM25 / dense / hybrid recall on a BEIR folder's judgements")
    r.add_argument("--data", required=True, help="BEIR folder holding queries.jsonl and qrels/")
    r.add_argument("--split", default="dev", help="judgements to use: qrels/SPLIT.tsv (default dev)")
    r.add_argument("--route", choices=["bm25", "dense", "hybrid", "all"], default="all")
    r.add_argument("--model", help="query encoder (dense.model; must match the index's document encoder)")
    r.add_argument("-k", type=int, default=1000, help="candidates per query (default 1000)")
    r.set_defaults(handler=_eval_recall)


def add_trainer(models) -> None:
    t = models.add_parser("dual-encoder", help="dense recall: InfoNCE with in-batch + BM25 hard negatives")
    t.add_argument("--data", help="BEIR folder with qrels/SPLIT.tsv (needed unless train_dense.unsupervised)")
    t.add_argument("--split", default="train", help="training judgements (default train)")
    t.add_argument("--dev-split", default="dev", help="judgements for the per-epoch evaluation (default dev)")
    t.add_argument("--out", help="model folder (default HOME/models/dual-encoder)")
    t.add_argument("--log", help="JSONL training log (default OUT/train_log.jsonl)")
    t.add_argument("--device", default="auto")
    t.set_defaults(handler=_train)


def _embed(args, config) -> int:
    from ranking.dual_encoder import dense_index_dir, embed_store

    manifest = embed_store(config, args.model, rebuild=args.rebuild, progress=not args.quiet)
    print(f"vector index {dense_index_dir(config)}: generation {manifest['generation']}, {manifest['count']} "
          f"vectors of dimension {manifest['dim']} ({len(manifest['parts'])} part(s)), "
          f"model {manifest['meta'].get('model')}")
    return 0


def _eval_recall(args, config) -> int:
    from dataclasses import replace

    from ranking.evaluate import format_table
    from ranking.recall import evaluate_recall

    if args.model:
        config = replace(config, dense=replace(config.dense, model=args.model))
    routes = ["bm25", "dense", "hybrid"] if args.route == "all" else [args.route]
    rows = evaluate_recall(config, args.data, args.split, routes, k=args.k, progress=not args.quiet)
    print(format_table(rows, ["route", "queries", "nDCG@10", "Recall@100", "Recall@1000", "ms/query"]))
    return 0


def _train(args, config) -> int:
    from pathlib import Path

    from ranking.train_dense import train_dual_encoder

    out = Path(args.out) if args.out else config.paths.models / "dual-encoder"
    log_file = Path(args.log) if args.log else out / "train_log.jsonl"
    out.mkdir(parents=True, exist_ok=True)
    s = train_dual_encoder(config, args.data, out, split=args.split, dev_split=args.dev_split, log_file=log_file,
                           device=args.device, progress=not args.quiet)
    print(f"dual encoder saved to {s['model']} (best epoch {s['best_epoch']}, {s['steps']} steps, "
          f"{s['seconds']:.0f} s); log {log_file}")
    if s["dev"]:
        print("  dev " + ", ".join(f"{k} {v:.4f}" for k, v in s["dev"].items()))
    return 0

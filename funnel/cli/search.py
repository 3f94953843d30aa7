"""Subcommands of ranking: `funnel search`, `funnel eval`, `funnel train MODEL` (from `funnel.cli.train`),
`funnel build`."""
from __future__ import annotations

import json

from funnel.cli import train as cli_train


def register(sub) -> None:
    s = sub.add_parser("search", help="query the funnel (or the bare index) from the command line")
    s.add_argument("query")
    s.add_argument("-k", type=int, default=10, help="results to show (default 10)")
    s.add_argument("--mode", choices=["funnel", "bm25", "and"], default="funnel",
                   help="every trained stage of the funnel (default), BM25 only, or boolean AND of every term")
    s.add_argument("--profile", choices=["cpu", "gpu"], default="cpu", help="funnel profile (default cpu)")
    s.add_argument("--explain", action="store_true", help="per result: its rank and score at each stage, "
                                                          "and each stage's milliseconds")
    s.add_argument("--json", action="store_true", help="print JSON lines")
    s.set_defaults(handler=_search)

    e = sub.add_parser("eval", help="evaluate retrieval, or the whole funnel, on a BEIR folder's judgements; "
                                    "--task rec: the recommendation funnel on the home's log")
    add_judgement_args(e, required=False)
    e.add_argument("--task", choices=["search", "rec"], default="search",
                   help="search (default; needs --data) or rec: the fitted recommendation funnel per stage on the "
                        "home's log, leave-one-out --split dev or test")
    e.add_argument("--retriever", choices=["bm25", "tfidf"], default="bm25")
    e.add_argument("--profile", choices=["cpu", "gpu"],
                   help="evaluate the funnel with this profile: metrics after each stage, latency per stage")
    e.add_argument("-k", type=int, default=1000, help="results per query (default 1000; 100 with --profile)")
    e.add_argument("--run-file", help="TREC run output (default HOME/runs/RETRIEVER-SPLIT.trec, "
                                      "or HOME/runs/funnel-PROFILE-SPLIT.trec)")
    e.set_defaults(handler=_eval)

    cli_train.register(sub)  # funnel train MODEL

    b = sub.add_parser("build", help="ingest a BEIR folder, index it, train every model and publish them; "
                                     "--task rec: fit the recommendation funnel on the home's log")
    b.add_argument("--data", help="BEIR folder: corpus.jsonl, queries.jsonl, qrels/{train,dev}.tsv (search); "
                                  "without it, a home whose store holds interactions builds the rec funnel")
    b.add_argument("--task", choices=["search", "rec"], default=None,
                   help="search (a BEIR folder, --data) or rec (the store's interaction log, `funnel ingest "
                        "movielens`; knobs in [rec]); default: search with --data, else rec")
    b.add_argument("--train-split", default="train")
    b.add_argument("--dev-split", default=None,
                   help="judgements the build selects on (early stopping, best epoch); default: config "
                        "build.select_split, 'carve' = a share of the training queries (TRAIN:select), the model "
                        "fitted on the rest (TRAIN:fit), so that dev is never tuned on")
    b.add_argument("--skip", action="append", default=[], choices=["ingest", "dense", "coarse", "cross-encoder"],
                   help="skip a step (repeatable)")
    b.add_argument("--device", default="auto", help="training device: auto, cpu, cuda")
    b.add_argument("--budget-min", type=float, default=None, metavar="N",
                   help="minutes for the whole build: each model's recipe is fitted into its share of it "
                        "(config build.budget_min, default 60; 0: no budget)")
    b.add_argument("--force", action="store_true",
                   help="rerun every step (default: skip steps whose inputs did not change since they last finished)")
    b.set_defaults(handler=_build)


def add_judgement_args(parser, required: bool = True) -> None:
    """--data and --split of a command that evaluates on a BEIR folder's judgements (`eval`, `eval-recall`)."""
    parser.add_argument("--data", required=required, help="BEIR folder holding queries.jsonl and qrels/")
    parser.add_argument("--split", default="dev", help="judgements to use: qrels/SPLIT.tsv (default dev)")


def _search(args, config) -> int:
    from funnel.core.errors import FunnelError
    from funnel.core.store import DocumentStore

    if args.k < 1:
        raise FunnelError("-k must be at least 1")
    if args.mode in ("bm25", "and"):
        from funnel.index.searcher import Bm25Retriever

        retriever = Bm25Retriever.open(config.paths.index, config.bm25)
        hits = retriever.search(args.query, args.k) if args.mode == "bm25" else retriever.boolean_and(args.query, args.k)
        results = [(d, s, None) for d, s in zip(hits.doc_ids, hits.scores.tolist())]
        stage_ms = {}
    else:
        from funnel.ranking.serving.pipeline import Pipeline, explain, timings

        pipe = Pipeline.from_config(config, args.profile)
        try:
            res = pipe.search(args.query, args.k)
        finally:
            pipe.close()
        rows = explain(res)
        results = [(d, s, r["stages"]) for d, s, r in zip(res.doc_ids, res.scores.tolist(), rows)]
        stage_ms = timings(res)
    with DocumentStore(config.paths.store, readonly=True) as store:
        docs = store.get_many([d for d, _, _ in results])
    if not results:
        print("no results")
    for rank, (doc_id, score, stages) in enumerate(results, 1):
        doc = docs.get(doc_id)
        title = doc.title if doc else ""
        if args.json:
            row = {"rank": rank, "doc_id": doc_id, "score": round(score, 4), "title": title,
                   "url": doc.url if doc else None}
            if args.explain and stages is not None:
                row["stages"] = stages
            print(json.dumps(row, ensure_ascii=False))
            continue
        print(f"{rank:3d}. {score:8.3f}  {doc_id}  {title[:90]}")
        if args.explain and stages is not None:
            print("      " + "  ".join(f"{name}: " + ("-" if v["rank"] is None else f"#{v['rank']} {v['score']:.3f}")
                                      for name, v in stages.items()))
    if args.explain and stage_ms and not args.json:
        print("stage ms: " + ", ".join(f"{name} {ms:.1f}" for name, ms in stage_ms.items()))
    return 0


def _eval(args, config) -> int:
    from dataclasses import replace
    from pathlib import Path

    from funnel.ranking.evaluate import evaluate_retriever

    if args.task == "rec":
        from funnel.cli.rec import eval_rec

        return eval_rec(args, config)
    if not args.data:
        from funnel.core.errors import FunnelError

        raise FunnelError("the search evaluation needs --data BEIR_FOLDER (or --task rec for recommendation)")
    if args.profile:
        return _eval_funnel(args, config)
    bm25 = replace(config.bm25, scorer="tfidf" if args.retriever == "tfidf" else "bm25")
    run_file = Path(args.run_file) if args.run_file else config.paths.runs / f"{args.retriever}-{args.split}.trec"
    metrics = evaluate_retriever(config.paths.index, bm25, args.data, args.split, k=args.k, run_file=run_file,
                                 progress=not args.quiet)
    print(f"{args.retriever} on {args.data} [{args.split}], {metrics.pop('queries')} queries")
    for name, value in metrics.items():
        print(f"  {name:12s} {value:.4f}")
    print(f"run written to {run_file}")
    return 0


def _eval_funnel(args, config) -> int:
    from pathlib import Path

    from funnel.core.judgements import read_qrels, read_queries
    from funnel.ranking.evaluate import format_table, write_trec_run
    from funnel.ranking.serving.pipeline import Pipeline, evaluate_pipeline

    k = args.k if args.k != 1000 else 100
    qrels = read_qrels(Path(args.data), args.split)
    queries = read_queries(Path(args.data))
    pipe = Pipeline.from_config(config, args.profile)
    try:
        out = evaluate_pipeline(pipe, queries, qrels, k=k, progress=not args.quiet)
    finally:
        pipe.close()
    print(f"funnel ({args.profile} profile: {' -> '.join(pipe.stage_names)}) on {args.data} [{args.split}], "
          f"{out['queries']} queries")
    print(format_table(out["stages"] + [{"stage": "total", **out["total"]}],
                       ["stage", "nDCG@10", "Recall@100", "p50_ms", "p95_ms"]))
    run_file = Path(args.run_file) if args.run_file else config.paths.runs / f"funnel-{args.profile}-{args.split}.trec"
    last = out["stages"][-1]["stage"] if out["stages"] else None
    if last:
        write_trec_run(out["runs"][last], run_file, tag=f"funnel-{args.profile}")
        print(f"run written to {run_file}")
    return 0


def _build(args, config) -> int:
    from funnel.cli.build import build
    from funnel.core.errors import FunnelError

    task = args.task or ("search" if args.data else "rec")
    if task == "rec":
        from funnel.cli.build_rec import build_rec

        if args.data:
            raise FunnelError("--task rec builds from the home's interaction log: load it with "
                              "`funnel ingest movielens [PATH]`, not --data")
        if args.task is None and not _store_has_interactions(config):
            raise FunnelError("give --data BEIR_FOLDER to build the search funnel, or ingest an interaction log "
                              "(`funnel ingest movielens [PATH]`) and run `funnel build --task rec`")
        report = build_rec(config, progress=not args.quiet)
        for step, info in report.items():
            print(f"{step:30s} {info}")
        return 0
    if not args.data:
        raise FunnelError("the search build needs --data BEIR_FOLDER")

    report = build(config, args.data, train_split=args.train_split, dev_split=args.dev_split, skip=tuple(args.skip),
                   device=args.device, progress=not args.quiet, budget_min=args.budget_min, force=args.force)
    for step, info in report.items():
        print(f"{step:16s} {info}")
    plan = json.loads(config.paths.build_log.read_text(encoding="utf-8"))["plan"]
    print("\nstep             planned min  actual min  recipe")
    for row in plan:
        cells = ["-" if row[k] is None else f"{row[k]:.1f}" for k in ("planned_min", "actual_min")]
        print(f"{row['step']:16s} {cells[0]:>11s} {cells[1]:>11s}  {row['recipe']}")
    return 0


def _store_has_interactions(config) -> bool:
    from funnel.core.store import DocumentStore

    if not config.paths.store.exists():
        return False
    with DocumentStore(config.paths.store, readonly=True) as store:
        return bool(store.interaction_datasets())

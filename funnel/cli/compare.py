"""`funnel compare RUN_A RUN_B --data DIR --split S`: two TREC run files on one split's judgements:
per-query deltas, the queries that improved and regressed, paired t-test and randomisation test."""
from __future__ import annotations


def register(sub) -> None:
    from funnel.cli.search import add_judgement_args

    c = sub.add_parser("compare", help="compare two TREC run files query by query, with paired significance tests")
    c.add_argument("run_a", metavar="RUN_A", help="TREC run file of the baseline (A)")
    c.add_argument("run_b", metavar="RUN_B", help="TREC run file of the system compared with it (B)")
    add_judgement_args(c)
    c.add_argument("--top", type=int, default=10, help="improved and regressed queries to list (default 10)")
    c.add_argument("--permutations", type=int, default=10_000,
                   help="random sign flips of the randomisation test (default 10000; exact up to 16 queries)")
    c.add_argument("--seed", type=int, default=0, help="seed of the randomisation test (default 0)")
    c.set_defaults(handler=_compare)


def _compare(args, config) -> int:
    from pathlib import Path

    from funnel.core.errors import FunnelError
    from funnel.core.judgements import read_qrels, read_queries
    from funnel.ranking.compare import compare_runs
    from funnel.ranking.evaluate import format_table, read_trec_run

    if args.permutations < 1:
        raise FunnelError("--permutations must be at least 1")
    run_a, run_b = read_trec_run(args.run_a), read_trec_run(args.run_b)
    qrels = read_qrels(Path(args.data), args.split)
    try:
        texts = read_queries(Path(args.data))
    except FunnelError:
        texts = {}  # query texts only label the lists
    cmp = compare_runs(run_a, run_b, qrels, permutations=args.permutations, seed=args.seed)
    if not cmp.queries:
        raise FunnelError(f"{args.data} [{args.split}]: no judged query with a relevant document")
    unseen = [q for q in cmp.queries if q not in run_a and q not in run_b]
    print(f"A = {args.run_a}\nB = {args.run_b}\non {args.data} [{args.split}], {len(cmp.queries)} judged queries"
          + (f" ({len(unseen)} in neither run: 0 for both)" if unseen else ""))
    rows = [{"metric": s.metric, "A": s.mean_a, "B": s.mean_b, "B - A": s.delta, "improved": s.improved,
             "regressed": s.regressed, "tied": s.tied, "p (paired t)": s.p_t_test,
             "p (randomisation)": s.p_randomisation} for s in cmp.summary]
    print(format_table(rows, list(rows[0])))
    metric = cmp.metrics[0]
    for title, qids in (("improved", cmp.improved(metric)), ("regressed", cmp.regressed(metric))):
        print(f"\n{len(qids)} queries {title} on {metric}" + (f" (top {args.top})" if len(qids) > args.top else ""))
        if qids:
            print(format_table([{"qid": q, "A": cmp.a[q][metric], "B": cmp.b[q][metric],
                                 "B - A": cmp.delta(q, metric), "query": texts.get(q, "")[:70]}
                                for q in qids[:args.top]], ["qid", "A", "B", "B - A", "query"]))
    print(f"\nrandomisation test: {args.permutations} sign flips, seed {args.seed}"
          f"{' (exact: every labelling)' if len(cmp.queries) <= 16 else ''}")
    return 0

"""Subcommands of recommendation: `funnel recommend`, and `funnel eval --task rec` (registered by
`funnel.cli.search`, handled here). `funnel ingest movielens` lives with the other producers in
`funnel.cli.crawl`, `funnel build --task rec` in `funnel.cli.build_rec`."""
from __future__ import annotations

import json
import math


def register(sub) -> None:
    r = sub.add_parser("recommend", help="recommend items to a user of the home's log (or a cold-start history)",
                       description="Runs the fitted recommendation funnel (HOME/models/rec, `funnel build --task rec`) "
                                   "for USER: a user of the ingested log, or, with --history, anyone (cold start).")
    r.add_argument("user", nargs="?", metavar="USER", help="user id (optional with --history)")
    r.add_argument("-k", type=int, default=None, help="items to show (default rec.default_k; at most rec.max_k)")
    r.add_argument("--history", metavar="ITEM,ITEM,...",
                   help="item ids the user interacted with, oldest first (cold start; replaces a known user's log)")
    r.add_argument("--explain", action="store_true", help="every stage's list and the rerank decisions")
    r.add_argument("--json", action="store_true", help="print the response as one JSON object")
    r.set_defaults(handler=_recommend)


def _recommend(args, config) -> int:
    from funnel.core.errors import FunnelError
    from funnel.ranking.rec.service import RecService

    history = None
    if args.history is not None:
        history = [h.strip() for h in args.history.split(",") if h.strip()]
    if args.user is None and history is None:
        raise FunnelError("give a USER id, or --history ITEM,ITEM,... for a cold start")
    svc = RecService.load(config)
    k = args.k if args.k is not None else svc.default_k
    out = svc.recommend(args.user, history, k=k, explain=args.explain)
    if args.json:
        print(json.dumps(out, ensure_ascii=False))
        return 0
    who = f"user {args.user}" if args.user is not None else "cold-start user"
    if history is not None:
        src = f"history of {len(history)} given items"
    else:
        src = f"{len(svc.history(args.user))} logged interactions"
    print(f"{who} ({src}): {len(out['items'])} items")
    for row in out["items"]:
        score = "-" if row["score"] is None else f"{row['score']:.3f}"
        print(f"{row['rank']:3d}. {row['item_id']:>8s}  {row['title'][:60]:60s}  {'|'.join(row['genres'])[:40]:40s} "
              f"{score:>8s}")
    print("stage ms: " + ", ".join(f"{name} {ms:.1f}" for name, ms in out["ms"].items()))
    if args.explain:
        print("\nstages:")
        for name, ids in out["stages"].items():
            shown = " ".join(ids[:20]) + (f" ... ({len(ids)} items)" if len(ids) > 20 else "")
            print(f"  {name:8s} {shown}")
        print("\nrerank decisions:")
        for t in out["trace"]:
            rule = t["rule"]
            rest = {k: v for k, v in t.items() if k != "rule"}
            if rule == "mmr":
                print(f"  mmr (lambda {rest['lambda']}, max_per_genre {rest['max_per_genre']}):")
                for p in rest["picks"]:
                    print(f"    pick {p['item_id']:>8s}  relevance {p['relevance']:.3f}  max genre similarity "
                          f"{p['max_genre_similarity']:.3f}  value {p['value']:.3f}")
                if rest["genre_cap_skipped"]:
                    print(f"    genre cap skipped: {' '.join(rest['genre_cap_skipped'])}"
                          + (f" (relaxed: {' '.join(rest['genre_cap_relaxed'])})" if rest["genre_cap_relaxed"] else ""))
            else:
                print(f"  {rule}: {json.dumps(rest, ensure_ascii=False)}")
    return 0


COLUMNS = [("stage", "stage"), ("NDCG@10", "ndcg@10"), ("HR@10", "hr@10"), ("Recall@50", "recall@50"),
           ("coverage", "coverage"), ("diversity", "diversity"), ("novelty", "novelty"), ("p50 ms", "p50_ms"),
           ("p95 ms", "p95_ms")]


def format_rec_table(result: dict[str, dict]) -> str:
    """`evaluate_funnel`'s per-stage dict -> a Markdown table (NaN, a list shorter than 50: '-')."""
    def cell(v):
        if isinstance(v, float):
            return "-" if math.isnan(v) else (f"{v:.1f}" if abs(v) >= 100 else f"{v:.4f}")
        return str(v)
    lines = ["| " + " | ".join(h for h, _ in COLUMNS) + " |", "|" + "|".join("---" for _ in COLUMNS) + "|"]
    for stage, m in result.items():
        lines.append("| " + " | ".join(cell(stage if key == "stage" else m.get(key, float("nan")))
                                       for _, key in COLUMNS) + " |")
    return "\n".join(lines)


def eval_rec(args, config) -> int:
    """`funnel eval --task rec --split dev|test`: the fitted funnel stage by stage on the home's log."""
    from dataclasses import replace

    from funnel.core.errors import FunnelError
    from funnel.ranking.rec.funnel import evaluate_funnel
    from funnel.ranking.rec.service import RecService
    from funnel.ranking.rec.split import split_view

    if args.split not in ("dev", "test"):
        raise FunnelError(f"--split {args.split}: the recommendation evaluation takes dev or test (leave-one-out)")
    svc = RecService.load(config)
    # the split's feature context (test: the dev item is history), with the serve-time rerank overrides
    funnel = replace(svc.fitted.funnel(svc.ds, args.split), config=svc.funnel_config)
    view = split_view(svc.ds, args.split)
    result = evaluate_funnel(funnel, view)
    overrides = "" if svc.funnel_config == svc.fitted.config else " (with the [rec] rerank overrides)"
    print(f"recommendation funnel{overrides} on {svc.dataset} [{args.split}]: {len(view)} users, "
          f"{svc.ds.n_items} items, leave-one-out, full ranking, one user per call")
    print(format_rec_table(result))
    return 0

"""`funnel prune`: remove a cross-encoder's least important attention heads (and FFN neurons), recover by
distillation, save the smaller model. The logic lives in `funnel.ranking.training.prune`."""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("prune", help="prune attention heads / FFN neurons of a cross-encoder, then recover")
    p.add_argument("--model", required=True, help="cross-encoder folder to prune (e.g. HOME/models/cross-encoder)")
    p.add_argument("--data", required=True, help="BEIR folder: importance and evaluation on prune.importance_split "
                                                 "(dev), recovery on prune.recover_split (train)")
    p.add_argument("--out", help="output folder (default: MODEL-pruned next to the model)")
    p.add_argument("--target", type=float, help="fraction of attention heads to remove (prune.target, default 0.5)")
    p.add_argument("--ffn", type=float, dest="ffn_target",
                   help="fraction of FFN neurons to remove per layer (prune.ffn_target, default 0)")
    p.add_argument("--latency-budget", type=float, dest="latency_budget",
                   help="keep pruning heads until latency <= this fraction of the original (prune.latency_budget)")
    p.add_argument("--steps", type=int, help="pruning rounds (prune.steps)")
    p.add_argument("--recover-steps", type=int, dest="recover_steps",
                   help="distillation steps after pruning, 0 for none (prune.recover_steps)")
    p.add_argument("--recover-schedule", choices=["end", "rounds"], dest="recover_schedule",
                   help="recovery after the last cut, or a share after every cut (prune.recover_schedule)")
    p.add_argument("--recover-lr", type=float, dest="recover_lr", help="recovery learning rate (prune.recover_lr)")
    p.add_argument("--distill-hidden", type=float, dest="distill_hidden",
                   help="weight of the hidden-state MSE to the teacher during recovery (prune.distill_hidden, default 0)")
    p.add_argument("--pseudo-queries", type=int, dest="recover_pseudo_queries",
                   help="document titles to add as unjudged recovery queries (prune.recover_pseudo_queries, default 0)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    p.set_defaults(handler=_prune)


def _prune(args, config) -> int:
    from dataclasses import replace

    from funnel.ranking.training.prune import prune_model

    given = {k: getattr(args, k) for k in ("target", "ffn_target", "latency_budget", "steps", "recover_steps",
                                           "recover_schedule", "recover_lr", "distill_hidden",
                                           "recover_pseudo_queries")
             if getattr(args, k) is not None}
    config = replace(config, prune=replace(config.prune, **given))
    out = prune_model(config, args.model, args.data, args.out, device=args.device, progress=not args.quiet)
    import json

    from funnel.ranking.models.cross_encoder import read_meta

    s = read_meta(out)["pruning"]
    print(f"heads {s['heads_before']} -> {s['heads_after']}, parameters {s['parameters_before']:,} -> "
          f"{s['parameters_after']:,}, FFN {s['ffn_sizes']}")
    print(f"nDCG@10 on {s['eval']['split']} ({s['eval']['queries']} queries, BM25 top {s['eval']['depth']}): "
          f"{json.dumps(s['ndcg_at_10'])}")
    print(f"pruned model written to {out}")
    return 0

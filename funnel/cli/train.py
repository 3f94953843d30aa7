"""`funnel train MODEL`: one subcommand per trainable model of the funnel, all from the table `TRAINERS`.

Every trainer takes the same flags (`--data`, `--split`, `--out`, `--log`; `--dev-split` and `--device`
where the trainer has them) and writes a model folder, by default HOME/models/NAME. The logic lives in
`funnel.ranking.training.train_coarse`, `funnel.ranking.training.train_cross` and `funnel.ranking.training.train_dense`. `funnel.cli.search` places
`funnel train` between `funnel eval` and `funnel build`.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from funnel.core.publish import fresh_tmp, publish_folder, restore_interrupted


@dataclass(frozen=True)
class Trainer:
    """One `funnel train NAME`: its help, the flags that differ between trainers, and its handler."""
    name: str  # the subcommand, and the default model folder HOME/models/NAME
    help: str
    handler: Callable[..., int]  # handler(args, config) -> exit status
    data_help: str
    data_required: bool = True
    dev_split_help: str | None = None  # None: the trainer takes no --dev-split
    device: bool = False  # whether it takes --device (default auto)
    folds: bool = False  # whether it takes --folds (out-of-fold encoders for coarse.cross_fit)
    marker: str = ""  # a file every saved model of this kind holds: an --out folder without it is not replaced


def register(sub) -> None:
    train = sub.add_parser("train", help="train a model of the funnel")
    models = train.add_subparsers(dest="model", metavar="MODEL", required=True)
    for trainer in TRAINERS:
        t = models.add_parser(trainer.name, help=trainer.help)
        t.add_argument("--data", required=trainer.data_required, help=trainer.data_help)
        t.add_argument("--split", default="train", help="training judgements (default train)")
        if trainer.dev_split_help:
            t.add_argument("--dev-split", default="dev", help=trainer.dev_split_help)
        t.add_argument("--out", help=f"model folder (default HOME/models/{trainer.name})")
        t.add_argument("--log", help="JSONL training log (default OUT/train_log.jsonl)")
        if trainer.device:
            t.add_argument("--device", default="auto")
        if trainer.folds:
            t.add_argument("--folds", type=int, default=0, metavar="K",
                           help="also train K out-of-fold query-tower encoders into HOME/models/dual-encoder-folds "
                                "(what coarse.cross_fit=K trains the coarse ranker with)")
        t.set_defaults(handler=trainer.handler)


def _model_folder(args, config, name: str) -> tuple[Path, Path, Path]:
    """(final, tmp, log): the model folder (--out, else HOME/models/NAME), the empty ``.tmp-NAME`` beside it
    that the trainer writes into, and the training log (--log, else in the folder). The trainer never
    writes into the final folder: `_publish` swaps the finished one in, so a server reading it, or a
    training run killed half way, sees the previous model whole (`funnel.core.publish`)."""
    out = Path(args.out) if args.out else config.paths.models / name
    out.parent.mkdir(parents=True, exist_ok=True)
    restore_interrupted(out)
    marker = next(t.marker for t in TRAINERS if t.name == name)
    if out.is_dir() and any(out.iterdir()) and not (out / marker).exists():
        from funnel.core.errors import InputError

        raise InputError(f"--out {out}: the folder holds files but no {name} model ({marker} missing), and the "
                         f"new model replaces the whole folder: give a new or empty folder, or an earlier model's")
    tmp = fresh_tmp(out)
    return out, tmp, Path(args.log) if args.log else tmp / "train_log.jsonl"


def _train_coarse(args, config) -> int:
    from funnel.ranking.training.train_coarse import train_coarse

    out, tmp, log_file = _model_folder(args, config, "coarse")
    train_coarse(config, args.data, tmp, train_split=args.split, dev_split=args.dev_split,
                 log_file=log_file, progress=not args.quiet)
    publish_folder(tmp, out)
    meta = json.loads((out / "meta.json").read_text(encoding="utf-8"))
    print(f"coarse model saved to {out}: best iteration {meta['best_iteration']}, "
          f"dev nDCG@10 {meta['dev']['recall']['nDCG@10']:.4f} (recall) -> {meta['dev']['coarse']['nDCG@10']:.4f}")
    return 0


def _train_cross_encoder(args, config) -> int:
    from funnel.ranking.training.train_cross import train_cross_encoder

    out, tmp, log_file = _model_folder(args, config, "cross-encoder")
    train_cross_encoder(config, args.data, tmp, split=args.split, dev_split=args.dev_split,
                        log_file=log_file, device=args.device, progress=not args.quiet)
    publish_folder(tmp, out)
    print(f"cross-encoder saved to {out}")
    return 0


def _train_dual_encoder(args, config) -> int:
    from funnel.ranking.training.train_dense import train_dual_encoder

    if args.folds and args.data is None:
        from funnel.core.errors import InputError

        raise InputError("--folds needs judgements: pass --data")
    out, tmp, log_file = _model_folder(args, config, "dual-encoder")
    s = train_dual_encoder(config, args.data, tmp, split=args.split, dev_split=args.dev_split, log_file=log_file,
                           device=args.device, progress=not args.quiet)
    publish_folder(tmp, out)
    log_file = out / log_file.name if log_file.parent == tmp else log_file
    print(f"dual encoder saved to {out} (best epoch {s['best_epoch']}, {s['steps']} steps, "
          f"{s['seconds']:.0f} s); log {log_file}")
    if s["dev"]:
        print("  dev " + ", ".join(f"{k} {v:.4f}" for k, v in s["dev"].items()))
    if args.folds:
        from funnel.ranking.training.cross_fit import train_fold_encoders

        folder = train_fold_encoders(config, args.data, args.folds, split=args.split, dev_split=args.dev_split,
                                     device=args.device, progress=not args.quiet)
        print(f"{args.folds} out-of-fold encoders saved to {folder} (use with --set coarse.cross_fit={args.folds})")
    return 0


# The one registry of trainable models, in `funnel train --help` order.
TRAINERS: tuple[Trainer, ...] = (
    Trainer("coarse", "coarse ranking: LightGBM LambdaMART on recall candidates", _train_coarse,
            data_help="BEIR folder with qrels/TRAIN.tsv and qrels/DEV.tsv",
            dev_split_help="early-stopping judgements (default dev)",
            marker="meta.json"),
    Trainer("cross-encoder", "fine ranking: MiniLM cross-encoder, listwise, BM25 hard negatives", _train_cross_encoder,
            data_help="BEIR folder with qrels/SPLIT.tsv",
            dev_split_help="judgements for the per-epoch check that keeps the best epoch (default dev)", device=True,
            marker="funnel_meta.json"),
    Trainer("dual-encoder", "dense recall: InfoNCE with in-batch + BM25 hard negatives", _train_dual_encoder,
            data_help="BEIR folder with qrels/SPLIT.tsv (needed unless train_dense.unsupervised)",
            data_required=False, dev_split_help="judgements for the per-epoch evaluation (default dev)", device=True,
            folds=True,
            marker="dual_encoder.json"),
)

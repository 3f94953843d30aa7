"""`funnel`: the one front door. Parses global options, builds the config, dispatches to a subcommand.

The top layer of the package: each module of `funnel.cli` registers the subcommands of one stage
(``register(subparsers)``); a handler only turns arguments into a config and calls one library
function of the stage below. Nothing under `funnel.core` or a stage imports this package.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys

from tqdm.contrib.logging import logging_redirect_tqdm

from funnel import __version__
from funnel.cli import compare, crawl, dashboard, demo, dense, index, pipeline, prune, rec, search, serve
from funnel.core.config import load_config
from funnel.core.errors import FunnelError, storage_error

# Modules that add subcommands, in help order.
_COMMANDS = (crawl, index, pipeline, search, rec, compare, prune, dense, serve, dashboard, demo)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="funnel", description="Funnel: crawl, index, rank and serve search.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Config: defaults < --config FILE < --set section.key=value. See README.md.")
    parser.add_argument("--home", help="folder for the store, index and models (config paths.home; default .funnel)")
    parser.add_argument("--config", metavar="FILE", help="TOML config file")
    parser.add_argument("--set", metavar="SECTION.KEY=VALUE", action="append", default=[], dest="overrides",
                        help="override one config value, e.g. --set bm25.k1=1.2 (repeatable)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars and no INFO log lines")
    parser.add_argument("--version", action="version", version=f"funnel {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _COMMANDS:
        module.register(sub)
    return parser


def set_runtime_env() -> None:
    """Environment every Funnel process runs with (the CLI, and benchmarks that time the same code);
    set before torch, LightGBM or transformers are imported, never over a user's own value."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is downloaded at run time
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    # transformers 5 draws a bar for every load and save of weights ("Loading weights", "Writing model
    # shards"): noise between Funnel's own bars, a checkpoint per epoch
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    # LightGBM and torch share one OpenMP runtime: spinning idle threads made recall 10x slower
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def main(argv: list[str] | None = None) -> int:
    set_runtime_env()
    parser = build_parser()
    args = parser.parse_args(argv)
    # timestamps on every line of long work; -q keeps warnings and errors only
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    config = None
    try:
        # --home is taken as the path it is, never re-parsed as a TOML string (quotes, backslashes)
        config = load_config(args.config, args.overrides, home=args.home or None)
        with logging_redirect_tqdm():  # a log line during a progress bar goes above it, not glued onto it
            return int(args.handler(args, config) or 0)
    except FunnelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # a read-only home or a full disk: one line, not a traceback; anything else is a bug
        paths = config.paths if config is not None else None
        why = storage_error(exc, paths and paths.store, paths and paths.home)
        if why is None:
            raise
        print(f"error: {why}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

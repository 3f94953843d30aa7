"""Subcommands of the producers: `funnel ingest` (and `funnel crawl`)."""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("ingest", help="load a corpus into the document store")
    kinds = p.add_subparsers(dest="kind", metavar="FORMAT", required=True)
    beir = kinds.add_parser("beir", help="a BEIR folder: corpus.jsonl, queries.jsonl, qrels/*.tsv")
    beir.add_argument("dir", help="the BEIR folder")
    beir.add_argument("--name", help="dataset name (default: the folder's name)")
    beir.set_defaults(handler=_ingest_beir)


def _ingest_beir(args, config) -> int:
    from crawler.beir import ingest_beir
    from funnel.store import DocumentStore

    with DocumentStore(config.paths.store) as store:
        counts = ingest_beir(args.dir, store, name=args.name)
    print(f"ingested into {config.paths.store}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0

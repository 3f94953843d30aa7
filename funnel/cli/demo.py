"""`funnel demo`: the whole system in one command on a real site.

Serves the Python documentation (Debian ``python3.11-doc``, or any folder of HTML with
``--site-dir``) on loopback, crawls it into a fresh store, builds the inverted index with Spark,
computes PageRank with Spark, builds the dense index, then starts the query API and the dashboard
and prints their URLs. ``--no-spark`` uses the local index builder and single-machine PageRank,
``--no-dense`` skips the dense index; the summary lists what was skipped.

Everything goes into ``HOME/demo`` (recreated on each run), so the user's own home is untouched.
This module sits at the top of the data flow and imports each stage lazily.
"""
from __future__ import annotations

import functools
import http.server
import logging
import shutil
import signal
import socket
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from funnel.core.config import Config
from funnel.core.errors import FunnelError
from funnel.core.procs import stop_process

log = logging.getLogger(__name__)

SITE_PACKAGE = "python3.11-doc"
SAMPLE_QUERIES = ("list comprehension", "open a file and read lines", "asyncio event loop")


@dataclass
class DemoReport:
    home: Path
    site_url: str = ""
    steps: list[tuple[str, str, float]] = field(default_factory=list)  # (step, what happened, seconds)
    skipped: list[str] = field(default_factory=list)
    api_url: str | None = None
    dashboard_url: str | None = None

    def step(self, name: str, detail: str, seconds: float) -> None:
        self.steps.append((name, detail, seconds))
        print(f"[demo] {name}: {detail} ({seconds:.1f}s)", flush=True)

    def skip(self, name: str, why: str) -> None:
        self.skipped.append(f"{name}: {why}")
        print(f"[demo] SKIPPED {name}: {why}", flush=True)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # the crawl would print one line per page
        pass


def serve_folder(root: Path, host: str = "127.0.0.1") -> tuple[http.server.ThreadingHTTPServer, str]:
    """A static HTTP server for `root` on a free loopback port, in a daemon thread; (server, base URL)."""
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer((host, 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="demo-site", daemon=True).start()
    return server, f"http://{host}:{server.server_address[1]}/"


def _port_or_free(host: str, port: int) -> int:
    """`port` if it can be bound on `host`, else a free one (the demo must not fail on a busy 8000/8501)."""
    with socket.socket() as s:
        try:
            s.bind((host, port))
            return port
        except OSError:
            pass
    with socket.socket() as s:
        s.bind((host, 0))
        free = s.getsockname()[1]
    print(f"[demo] port {port} is busy: using {free}", flush=True)
    return free


def crawl_site(config: Config, seed: str, report: DemoReport, max_pages: int, progress: bool) -> None:
    from funnel.core.store import DocumentStore

    t0 = time.perf_counter()
    crawl_config = replace(config.crawl, allow_private=True, max_pages=max_pages, per_host_delay=0.0)
    from funnel.crawler.crawl import crawl, frontier_path

    with DocumentStore(config.paths.store) as store:
        stats = crawl([seed], store, crawl_config, frontier_path(config.paths.home), fresh=True, progress=progress)
        n_docs, n_links = store.count(), sum(1 for _ in store.iter_links())
    if n_docs == 0:
        raise FunnelError(f"the crawl of {seed} stored no page: {stats.summary()}")
    report.step("crawl", f"{n_docs} pages, {n_links} links from {seed} ({stats.pages_per_s:.0f} pages/s)",
                time.perf_counter() - t0)


def build_index_and_pagerank(config: Config, report: DemoReport, use_spark: bool, progress: bool) -> None:
    """Spark index + Spark PageRank over the store's Parquet export; the local builders with --no-spark."""
    from funnel.core.store import DocumentStore
    from funnel.index.analyze import Analyzer

    pagerank_file = config.paths.pagerank
    if use_spark:
        from funnel.pipelines.index_job import run_index_job
        from funnel.pipelines.pagerank_job import run_pagerank_job
        from funnel.pipelines.session import spark_session

        t0 = time.perf_counter()
        with DocumentStore(config.paths.store, readonly=True) as store:
            store.export_parquet(config.paths.parquet)
        spark = spark_session(config.spark, app_name="funnel-demo")
        try:
            shards = config.spark.index_shards or config.spark.shuffle_partitions
            res = run_index_job(spark, config.paths.parquet, config.paths.index, Analyzer(config.analyzer),
                                incremental=False, n_shards=shards)
            report.step("index (Spark)", f"{res.n_docs} documents, {shards} shards [{spark.sparkContext.master}]",
                        time.perf_counter() - t0)
            t0 = time.perf_counter()
            c = config.pagerank
            pr = run_pagerank_job(spark, config.paths.parquet, pagerank_file, c.damping, c.tol, c.max_iter,
                                  collapse_duplicates=c.collapse_duplicates)
            # pr.method: "driver" when the graph was small enough to iterate on the driver after the Spark joins
            report.step("PageRank (Spark)", f"{pr.iterations} iterations ({pr.method}), converged={pr.converged}",
                        time.perf_counter() - t0)
        finally:
            spark.stop()
        return
    report.skip("spark", "--no-spark given; using the local builders")
    from funnel.index.builder import build_index
    from funnel.index.pagerank import graph_from_edges, pagerank, save_pagerank

    t0 = time.perf_counter()
    with DocumentStore(config.paths.store, readonly=True) as store:
        build_index(store, config.paths.index, Analyzer(config.analyzer), incremental=False, progress=progress)
        report.step("index (local)", f"{store.count()} documents", time.perf_counter() - t0)
        t0 = time.perf_counter()
        nodes = [d.doc_id for d in store.iter_docs()]
        graph = graph_from_edges(store.iter_links(), nodes, collapse_duplicates=config.pagerank.collapse_duplicates)
    c = config.pagerank
    res = pagerank(graph.adj, c.damping, c.tol, c.max_iter)
    save_pagerank(pagerank_file, graph.nodes, res.scores)
    report.step("PageRank (local)", f"{graph.n_nodes} pages, {graph.n_edges} links, {res.iterations} iterations",
                time.perf_counter() - t0)


def build_dense(config: Config, report: DemoReport, progress: bool) -> None:
    from funnel.ranking.models.dual_encoder import embed_store

    t0 = time.perf_counter()
    manifest = embed_store(config, None, rebuild=True, progress=progress)
    report.step("dense index", f"{manifest['count']} vectors of dimension {manifest['dim']} "
                               f"({manifest['meta'].get('model')})", time.perf_counter() - t0)


def top_pages(config: Config, n: int = 5) -> list[tuple[str, float]]:
    from funnel.index.pagerank import load_pagerank

    pr = load_pagerank(config.paths.home)
    return sorted(pr.items(), key=lambda x: -x[1])[:n]


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def start_api(service, config: Config):
    """uvicorn in a daemon thread over the already-opened service; returns the server (``should_exit`` stops it)."""
    import uvicorn

    from funnel.api.app import create_app

    server = uvicorn.Server(uvicorn.Config(create_app(service), host=config.serve.host, port=config.serve.port,
                                           log_level="warning"))
    threading.Thread(target=server.run, name="demo-api", daemon=True).start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline:
            raise FunnelError(f"the API did not start on {config.serve.host}:{config.serve.port}")
        time.sleep(0.1)
    return server


def run_demo(config: Config, *, site_dir: str | Path | None = None, max_pages: int = 2000, use_spark: bool = True,
             dense: bool = True, serve: bool = True, models: str | Path | None = None,
             progress: bool = True) -> DemoReport:
    """Build the demo home from a served site and (unless ``serve=False``) serve it until interrupted.

    ``models``: a folder of trained models (a home's ``models/``: coarse, cross-encoder, dual-encoder)
    copied into the demo home, so the crawled site is ranked by the whole funnel.
    """
    t_all = time.perf_counter()
    home = Path(config.paths.home) / "demo"
    if home.exists():
        shutil.rmtree(home)
    home.mkdir(parents=True)
    config = replace(config, paths=replace(config.paths, home=str(home)))
    report = DemoReport(home)
    if models is not None:
        if not Path(models).is_dir():
            raise FunnelError(f"--models {models} is not a folder (expected a home's models/ folder)")
        shutil.copytree(models, config.paths.models)

    t0 = time.perf_counter()
    if site_dir is not None:
        root = Path(site_dir)
        if not root.is_dir():
            raise FunnelError(f"--site-dir {root} is not a folder")
        start = "index.html"
    else:
        from funnel.crawler.sites import SITES, debian_site

        root = debian_site(SITE_PACKAGE)
        start = SITES[SITE_PACKAGE][1]
    server, base = serve_folder(root, config.serve.host)
    report.site_url = base
    report.step("site", f"{root} served at {base}", time.perf_counter() - t0)
    try:
        crawl_site(config, base + start, report, max_pages, progress)
        build_index_and_pagerank(config, report, use_spark, progress)
        if dense:
            build_dense(config, report, progress)
        else:
            report.skip("dense index", "--no-dense given")
        for path in (config.paths.coarse_model, config.paths.cross_encoder):
            if not path.exists():
                report.skip(f"{path.name} model", "a crawled site has no judgements to train it on; pass "
                                             "--models HOME/models of a home trained with `funnel build`")
        from funnel.api.service import SearchService

        t0 = time.perf_counter()
        service = SearchService.open(config)
        report.step("search service", f"{service.n_docs} documents, stages {' -> '.join(service.stage_names())}",
                    time.perf_counter() - t0)
        print("[demo] top pages by PageRank:")
        for doc_id, score in top_pages(config):
            print(f"    {score:.4f}  {doc_id}")
        for q in SAMPLE_QUERIES:
            res = service.search(q, k=3)
            print(f"[demo] {q!r}: " + " | ".join(f"{h.title[:50]}" for h in res.hits))
        print(f"[demo] built in {time.perf_counter() - t_all:.0f}s; home {home}")
        if report.skipped:
            print("[demo] skipped: " + "; ".join(report.skipped))
        if not serve:
            service.close()
            return report
        sc = config.serve
        serve_config = replace(config, serve=replace(sc, port=_port_or_free(sc.host, sc.port),
                                                     dashboard_port=_port_or_free(sc.host, sc.dashboard_port)))
        api = start_api(service, serve_config)
        report.api_url = f"http://{serve_config.serve.host}:{serve_config.serve.port}"
        from funnel.dashboard.launch import run_dashboard

        dash = run_dashboard(serve_config)
        report.dashboard_url = f"http://{serve_config.serve.host}:{serve_config.serve.dashboard_port}"
        print(f"\n  API:        {report.api_url}/search?q=list+comprehension   (docs: {report.api_url}/docs)\n"
              f"  Dashboard:  {report.dashboard_url}\n  Site:       {base}\n\nCtrl-C stops everything.", flush=True)
        previous = signal.signal(signal.SIGTERM, _interrupt)  # `kill PID` stops it like Ctrl-C does
        try:
            while dash.poll() is None:
                time.sleep(0.5)
            raise FunnelError(f"the dashboard exited with code {dash.returncode}")
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGTERM, previous)
            api.should_exit = True
            stop_process(dash)
            service.close()
        return report
    finally:
        server.shutdown()


def register(sub) -> None:
    p = sub.add_parser("demo", help="serve the Python docs on loopback, crawl, Spark index + PageRank, dense "
                                    "index, then start the API and the dashboard (HOME/demo)")
    p.add_argument("--site-dir", help="serve this folder of HTML instead of Debian's python3.11-doc")
    p.add_argument("--max-pages", type=int, default=2000, help="crawl at most this many pages (default 2000)")
    p.add_argument("--no-spark", action="store_true", help="local index builder and PageRank instead of Spark")
    p.add_argument("--no-dense", action="store_true", help="skip the dense index (MiniLM encoding)")
    p.add_argument("--no-serve", action="store_true", help="build, run the sample queries and exit")
    p.add_argument("--models", help="trained models to rank with (a home's models/ folder, e.g. .funnel/models "
                                    "after `funnel build` on SciFact); without, the funnel is recall + re-rank")
    p.set_defaults(handler=_demo)


def _demo(args, config) -> int:
    run_demo(config, site_dir=args.site_dir, max_pages=args.max_pages, use_spark=not args.no_spark,
             dense=not args.no_dense, serve=not args.no_serve, models=args.models, progress=not args.quiet)
    return 0

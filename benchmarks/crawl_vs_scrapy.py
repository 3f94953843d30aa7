"""Funnel's crawler vs Scrapy on the same site, served on loopback by nginx; plus the server's ceiling.

The site is Debian's ``openjdk-17-doc`` (the Java 17 API docs, ~10,140 HTML pages), served by nginx
(a generated config, run in the foreground on a loopback port; robots.txt served) so the server is
not the bottleneck. Three runs, each a separate process whose peak RSS is taken from ``wait4``:

1. ceiling: a bare aiohttp loop GETting every HTML file of the site (the known URL list), no parsing;
2. Funnel: ``funnel crawl http://127.0.0.1:PORT/api/index.html --prefix .../api/`` into a fresh home;
3. Scrapy: a CrawlSpider (LinkExtractor limited to ``/api/``, one item per page with url, title and
   body text, written to a JSON-lines feed), ROBOTSTXT_OBEY, no delay, no autothrottle; then the
   same spider yielding url and title only (no text extraction), as Scrapy's lower bound.

Funnel and Scrapy run with the same concurrency (total and per host). Pages/s = pages handled /
wall seconds of the process. Funnel additionally stores each page in SQLite with its links.

    nice -n 5 python benchmarks/crawl_vs_scrapy.py [--concurrency 16] [--max-pages 0] [--out benchmarks/results/crawl_vs_scrapy.md]

Needs nginx (`apt-get install -y nginx-light`) and Scrapy (dev extra).
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

NGINX_CONF = """
daemon off;
master_process on;
worker_processes 1;
user root;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location = /robots.txt {{ default_type text/plain; return 200 "User-agent: *\\nDisallow: /api/private/\\n"; }}
    }}
}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_nginx(site_root: Path, tmp: Path) -> tuple[subprocess.Popen, int]:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        sys.exit("nginx is missing: apt-get install -y nginx-light")
    port = free_port()
    conf = tmp / "nginx.conf"
    conf.write_text(NGINX_CONF.format(tmp=tmp, port=port, root=site_root))
    proc = subprocess.Popen([nginx, "-c", str(conf), "-p", str(tmp)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    sys.exit(f"nginx did not start; see {tmp}/nginx-error.log")


def run_measured(cmd: list[str], env: dict | None = None) -> tuple[float, float, int, int]:
    """Run `cmd`; (wall seconds, CPU seconds (user + system), peak RSS in MiB, exit status)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    err = proc.stderr.read().decode("utf-8", "replace")
    if status != 0:
        print(err[-3000:], file=sys.stderr)
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss // 1024, os.waitstatus_to_exitcode(status)


# -- child modes ----------------------------------------------------------------------------
def child_ceiling(list_file: str, concurrency: int) -> None:
    import asyncio

    import aiohttp

    urls = Path(list_file).read_text().split()

    async def main():
        queue = list(reversed(urls))
        n = 0
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
            async def worker():
                nonlocal n
                while queue:
                    async with session.get(queue.pop()) as resp:
                        await resp.read()
                        n += resp.status == 200
            await asyncio.gather(*(worker() for _ in range(concurrency)))
        print(n, file=sys.stderr)

    asyncio.run(main())


def body_text(root) -> str:
    """Visible body text from an lxml tree, script/style excluded, in one linear pass.

    (The XPath idiom ``//body//text()[not(ancestor::script) and not(ancestor::style)]`` ran for
    more than 5 minutes on one of javadoc's 5-6 MB index pages, so Scrapy would not finish.)
    """
    body = root.find("body")
    body = root if body is None else body
    out = []
    for el in body.iter():
        if isinstance(el.tag, str) and el.tag not in ("script", "style") and el.text:
            out.append(el.text)
        if el is not body and el.tail:
            out.append(el.tail)
    return " ".join(" ".join(out).split())


def child_scrapy(start: str, prefix: str, feed: str, concurrency: int, max_pages: int, with_text: bool) -> None:
    from scrapy.crawler import CrawlerProcess
    from scrapy.linkextractors import LinkExtractor
    from scrapy.spiders import CrawlSpider, Rule

    class JavadocSpider(CrawlSpider):
        name = "javadoc"
        allowed_domains = ["127.0.0.1"]
        start_urls = [start]
        rules = (Rule(LinkExtractor(allow=[prefix.replace(".", r"\.") + ".*"]), callback="parse_page", follow=True),)

        def parse_start_url(self, response):
            return self.parse_page(response)

        def parse_page(self, response):
            item = {"url": response.url, "title": response.xpath("//title/text()").get(default="")}
            if with_text:
                item["text"] = body_text(response.selector.root)
            yield item

    settings = {
        "CONCURRENT_REQUESTS": concurrency, "CONCURRENT_REQUESTS_PER_DOMAIN": concurrency,
        "DOWNLOAD_DELAY": 0, "ROBOTSTXT_OBEY": True, "AUTOTHROTTLE_ENABLED": False, "HTTPCACHE_ENABLED": False,
        "LOG_LEVEL": "WARNING", "TELNETCONSOLE_ENABLED": False, "COOKIES_ENABLED": False,
        "USER_AGENT": "ScrapyBench", "FEEDS": {feed: {"format": "jsonlines", "encoding": "utf8"}},
        "CLOSESPIDER_PAGECOUNT": max_pages, "DEPTH_LIMIT": 0,
    }
    process = CrawlerProcess(settings)
    process.crawl(JavadocSpider)
    process.start()


# -- the benchmark --------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--max-pages", type=int, default=0, help="0: the whole site")
    ap.add_argument("--only", choices=["ceiling", "funnel", "scrapy"], action="append")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/crawl_vs_scrapy.md"))
    args = ap.parse_args()

    from funnel.crawler.sites import debian_site

    api = debian_site("openjdk-17-doc")
    site_root = api.parent
    only = set(args.only or ["ceiling", "funnel", "scrapy"])
    max_pages = args.max_pages or 1_000_000
    rows: list = []

    def done(row):
        rows.append(row)
        print(f"{row[0]}: {row[1]} pages in {row[2]:.1f}s (CPU {row[3]:.1f}s)", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="crawlbench-") as tmp_s:
        tmp = Path(tmp_s)
        nginx, port = start_nginx(site_root, tmp)
        base = f"http://127.0.0.1:{port}"
        start, prefix = f"{base}/api/index.html", f"{base}/api/"
        py = sys.executable
        try:
            if "ceiling" in only:
                pages = sorted(api.rglob("*.html"))[:max_pages]
                (tmp / "urls.txt").write_text("\n".join(f"{base}/api/{p.relative_to(api).as_posix()}" for p in pages))
                wall, cpu, rss, rc = run_measured([py, __file__, "--child-ceiling", str(tmp / "urls.txt"),
                                              str(args.concurrency)])
                done(("server ceiling (bare aiohttp GET loop, known URL list)", len(pages), wall, cpu, rss, rc,
                             "-"))
            if "funnel" in only:
                home = tmp / "funnel-home"
                cmd = [py, "-m", "funnel.cli.main", "-q", "--home", str(home),
                       "--set", "crawl.max_bytes=64000000",  # javadoc has 5-6 MB pages; Scrapy's cap is 1 GB
                       "crawl", start, "--prefix", prefix,
                       "--allow-private", "--concurrency", str(args.concurrency), "--per-host", str(args.concurrency),
                       "--max-pages", str(max_pages), "--max-depth", "1000"]
                wall, cpu, rss, rc = run_measured(cmd, env={**os.environ, "PYTHONPATH": str(ROOT)})
                con = sqlite3.connect(home / "store.sqlite")
                stored = con.execute("SELECT COUNT(*) FROM docs").fetchone()[0]
                links = con.execute("SELECT COUNT(*) FROM links").fetchone()[0]
                fcon = sqlite3.connect(home / "crawl" / "frontier.sqlite")
                handled = fcon.execute("SELECT COUNT(*) FROM urls WHERE state != 0").fetchone()[0]
                done(("Funnel (aiohttp + selectolax, SQLite store)", handled, wall, cpu, rss, rc,
                             f"{stored} docs, {links} links"))
            if "scrapy" in only:
                import scrapy

                for with_text in (True, False):
                    feed = tmp / f"scrapy-{with_text}.jsonl"
                    cmd = [py, __file__, "--child-scrapy", start, prefix, str(feed), str(args.concurrency),
                           str(max_pages), str(int(with_text))]
                    wall, cpu, rss, rc = run_measured(cmd)
                    items = sum(1 for _ in feed.open()) if feed.exists() else 0
                    what = "url, title, body text" if with_text else "url and title only, no text: a lower bound"
                    done((f"Scrapy {scrapy.__version__} (CrawlSpider; items: {what})", items, wall, cpu, rss, rc,
                                 f"{items} items (JSON lines)"))
        finally:
            nginx.terminate()
            nginx.wait()

    out = [
        "# Crawl: Funnel vs Scrapy (openjdk-17-doc on loopback nginx)",
        "",
        f"- machine: 2-core CPU VM, no GPU (shared with other jobs), {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}",
        f"- command: `nice -n 5 python benchmarks/crawl_vs_scrapy.py --concurrency {args.concurrency}"
        + (f" --max-pages {args.max_pages}" if args.max_pages else "") + "`",
        f"- site: Debian openjdk-17-doc, start {start.replace(str(port), 'PORT')}, scope /api/; nginx 1 worker, "
        "robots.txt served and obeyed; no delay; same concurrency (total and per host) for both crawlers",
        "- pages/s = pages handled / process wall time (start-up included); peak RSS of the process (wait4)",
        "",
        "- CPU s = user + system CPU seconds of the process; pages per CPU-second is the figure that does not",
        "  depend on what else the shared machine was running",
        "",
        "| run | pages | seconds | pages/s | CPU s | pages per CPU-s | peak RSS MiB | stored | exit |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    rates, cpu_rates = {}, {}
    for name, pages, wall, cpu, rss, rc, stored in rows:
        rates.setdefault(name.split()[0], pages / wall)  # the first Scrapy row (with text) is the comparison
        cpu_rates.setdefault(name.split()[0], pages / max(cpu, 1e-9))
        out.append(f"| {name} | {pages:,} | {wall:.1f} | {pages / wall:,.1f} | {cpu:.1f} | {pages / max(cpu, 1e-9):,.1f} "
                   f"| {rss:,} | {stored} | {rc} |")
    if "Funnel" in rates and "Scrapy" in rates:
        out += ["", f"Funnel / Scrapy (same work: url, title, text): **{rates['Funnel'] / rates['Scrapy']:.2f}x** pages/s, "
                    f"**{cpu_rates['Funnel'] / cpu_rates['Scrapy']:.2f}x** pages per CPU-second"]
    if "Funnel" in rates and "server" in rates:
        out += ["", f"Funnel / server ceiling: {rates['Funnel'] / rates['server']:.2f}x pages/s"]
    text = "\n".join(out) + "\n"
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child-ceiling":
        child_ceiling(sys.argv[2], int(sys.argv[3]))
    elif len(sys.argv) > 1 and sys.argv[1] == "--child-scrapy":
        child_scrapy(*sys.argv[2:5], int(sys.argv[5]), int(sys.argv[6]), bool(int(sys.argv[7])))
    else:
        main()

"""Real websites for demos, tests and benchmarks: Debian's documentation packages, unpacked locally.

`debian_site("python3.11-doc")` returns the folder of the Python documentation's HTML (530
interlinked pages); `debian_site("openjdk-17-doc")` the Java API docs (10,141 pages). The
package is fetched once with ``apt-get download`` (the registry, not the web) and unpacked with
``dpkg -x`` into a cache folder; nothing is installed system-wide.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from funnel.core.errors import FunnelError

# package -> (HTML root inside the package, the start page a crawl begins at)
SITES = {
    "python3.11-doc": ("usr/share/doc/python3.11/html", "index.html"),
    "openjdk-17-doc": ("usr/share/doc/openjdk-17-jre-headless/api", "index.html"),
}


def default_cache() -> Path:
    return Path(os.environ.get("FUNNEL_SITES", Path(__file__).resolve().parent.parent / ".sites"))


def debian_site(package: str, cache_dir: str | Path | None = None) -> Path:
    """The HTML root folder of a Debian documentation package, downloading and unpacking it if needed."""
    if package not in SITES:
        raise FunnelError(f"unknown site package {package!r}; known: {', '.join(SITES)}")
    root_rel, start = SITES[package]
    cache = Path(cache_dir) if cache_dir else default_cache()
    unpacked = cache / package
    root = unpacked / root_rel
    if (root / start).exists():
        return root
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        raise FunnelError(f"{package} is not unpacked under {cache} and apt-get/dpkg are missing: "
                          f"unpack it there by hand (dpkg -x {package}_*.deb {unpacked})")
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        proc = subprocess.run(["apt-get", "download", package], cwd=tmp, capture_output=True, text=True)
        debs = list(Path(tmp).glob(f"{package}_*.deb"))
        if proc.returncode != 0 or not debs:
            raise FunnelError(f"`apt-get download {package}` failed: {proc.stderr.strip()[-500:]}")
        staging = Path(tmp) / "x"
        subprocess.run(["dpkg", "-x", str(debs[0]), str(staging)], check=True)
        if not (staging / root_rel / start).exists():
            raise FunnelError(f"{package}: {root_rel}/{start} not found in the package")
        if unpacked.exists():
            shutil.rmtree(unpacked)
        os.rename(staging, unpacked)
    return root


def start_url(package: str, base_url: str) -> str:
    """The crawl seed for a site served at `base_url` (which maps to the package's HTML root)."""
    return base_url.rstrip("/") + "/" + SITES[package][1]

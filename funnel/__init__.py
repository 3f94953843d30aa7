"""Funnel: crawl, index, rank and serve search and recommendations with a multi-stage ranking funnel.

Layers, each importing only those above it in this list:

- `funnel.core`: config, document store, errors, device choice, judgements reader;
- the stages: `funnel.crawler` -> `funnel.index` / `funnel.pipelines` -> `funnel.ranking` ->
  `funnel.api` / `funnel.dashboard`;
- `funnel.cli`: the command line, `funnel build` and `funnel demo`, which wire the stages.
"""
import os
from importlib.metadata import PackageNotFoundError, version

# LightGBM and torch share libgomp; with its default spin-waiting, threads left spinning after one
# library's parallel region starve the other's on a small machine (measured on 2 cores: hybrid
# recall 12 ms -> 230 ms p50 once the coarse stage had run). Passive waiting must be set before
# libgomp loads, i.e. before torch or lightgbm is imported: every Funnel import passes here first.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

try:
    __version__ = version("funnel-search")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

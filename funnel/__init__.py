"""Funnel: crawl, index, rank and serve search and recommendations with a multi-stage ranking funnel.

Layers, each importing only those above it in this list:

- `funnel.core`: config, document store, errors, device choice, judgements reader;
- the stages: `funnel.crawler` -> `funnel.index` / `funnel.pipelines` -> `funnel.ranking` ->
  `funnel.api` / `funnel.dashboard`;
- `funnel.cli`: the command line, `funnel build` and `funnel demo`, which wire the stages.
"""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("funnel-search")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

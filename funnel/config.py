"""Funnel's typed configuration: one frozen dataclass per concern, combined into `Config`.

Defaults live only here. Later sources win: defaults, then a TOML file
(``--config funnel.toml``), then command-line overrides (``--set section.key=value``).
Every artifact Funnel writes records the resolved config it was built with.

Example ``funnel.toml``::

    [paths]
    home = "/data/funnel"

    [bm25]
    k1 = 0.9
    b = 0.4
"""
from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from funnel.errors import FunnelError


@dataclass(frozen=True)
class PathsConfig:
    home: str = ".funnel"  # every artifact lives under this folder unless set otherwise

    @property
    def store(self) -> Path:
        return Path(self.home) / "store.sqlite"

    @property
    def index(self) -> Path:
        return Path(self.home) / "index"

    @property
    def models(self) -> Path:
        return Path(self.home) / "models"


@dataclass(frozen=True)
class AnalyzerConfig:
    lowercase: bool = True
    unicode_form: str = "NFKC"  # "" disables Unicode normalisation
    stopwords: bool = True  # English and Chinese stop word lists in index/stopwords_*.txt
    stemmer: str = "english"  # any PyStemmer (Snowball) language, or "" for none
    chinese: bool = True  # segment CJK runs with jieba
    min_token_len: int = 2  # shorter Latin tokens are dropped (CJK tokens are always kept)


@dataclass(frozen=True)
class BM25Config:
    k1: float = 0.9
    b: float = 0.4
    scorer: str = "bm25"  # "bm25" or "tfidf"


@dataclass(frozen=True)
class IndexConfig:
    batch_docs: int = 20_000  # documents analysed per batch while building a segment
    merge_max_segments: int = 8  # `funnel index` merges once more segments than this exist


@dataclass(frozen=True)
class CrawlConfig:
    user_agent: str = "FunnelBot/0.1 (+https://github.com/funnel-search/funnel)"
    concurrency: int = 16
    per_host_concurrency: int = 8
    per_host_delay: float = 0.0  # seconds between requests to one host; robots Crawl-delay wins if larger
    max_pages: int = 10_000
    max_depth: int = 50
    max_bytes: int = 5_000_000  # per response, after decompression
    connect_timeout: float = 5.0
    read_timeout: float = 15.0
    retries: int = 3
    max_redirects: int = 5
    allow_private: bool = False  # allow loopback / private targets (tests and local sites)


@dataclass(frozen=True)
class SparkConfig:
    master: str = "local[*]"
    driver_memory: str = "4g"
    shuffle_partitions: int = 8


@dataclass(frozen=True)
class PageRankConfig:
    damping: float = 0.85
    tol: float = 1e-10  # L1 change between iterations
    max_iter: int = 200


@dataclass(frozen=True)
class ServeConfig:
    host: str = "127.0.0.1"  # loopback by default: exposing the API is an explicit choice
    port: int = 8000
    dashboard_port: int = 8501
    max_query_chars: int = 512  # longer queries get a 422, not a slow scan
    max_k: int = 100  # largest k a request may ask for
    default_k: int = 10
    default_profile: str = "cpu"  # ranking profile when a request names none ("cpu" or "gpu")
    workers: int = 1  # uvicorn worker processes; each loads the index and models once


@dataclass(frozen=True)
class Config:
    paths: PathsConfig = field(default_factory=PathsConfig)
    analyzer: AnalyzerConfig = field(default_factory=AnalyzerConfig)
    bm25: BM25Config = field(default_factory=BM25Config)
    index: IndexConfig = field(default_factory=IndexConfig)
    crawl: CrawlConfig = field(default_factory=CrawlConfig)
    spark: SparkConfig = field(default_factory=SparkConfig)
    pagerank: PageRankConfig = field(default_factory=PageRankConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _coerce(section: str, key: str, value: Any, current: Any) -> Any:
    """Check a value against the type of the default it replaces."""
    expected = type(current)
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, expected):
        raise FunnelError(
            f"config {section}.{key}: expected {expected.__name__}, got {type(value).__name__} ({value!r})"
        )
    return value


def apply_overrides(config: Config, updates: dict[str, dict[str, Any]], origin: str) -> Config:
    """Return `config` with ``{section: {key: value}}`` applied; unknown names are errors."""
    sections = {f.name: getattr(config, f.name) for f in fields(config)}
    new_sections = {}
    for section, values in updates.items():
        if section not in sections:
            raise FunnelError(f"{origin}: unknown config section [{section}]; known: {', '.join(sections)}")
        if not isinstance(values, dict):
            raise FunnelError(f"{origin}: [{section}] must be a table of keys")
        current = new_sections.get(section, sections[section])
        known = {f.name for f in fields(current)}
        changes = {}
        for key, value in values.items():
            if key not in known:
                raise FunnelError(f"{origin}: unknown key {section}.{key}; known: {', '.join(sorted(known))}")
            changes[key] = _coerce(section, key, value, getattr(current, key))
        new_sections[section] = replace(current, **changes)
    return replace(config, **new_sections)


def _parse_override(text: str) -> tuple[str, str, Any]:
    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise FunnelError(f"--set {text!r}: expected section.key=value, e.g. bm25.k1=1.2")
    name, raw = text.split("=", 1)
    section, key = name.strip().split(".", 1)
    try:  # a TOML literal (number, bool, quoted string) ...
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:  # ... or a bare string
        value = raw
    return section, key, value


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Defaults, then the TOML file at `path` (if any), then ``section.key=value`` overrides."""
    config = Config()
    if path is not None:
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FunnelError(f"config file {path} does not exist") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise FunnelError(f"config file {path} is not valid TOML: {exc}") from None
        config = apply_overrides(config, data, str(path))
    updates: dict[str, dict[str, Any]] = {}
    for text in overrides:
        section, key, value = _parse_override(text)
        updates.setdefault(section, {})[key] = value
    return apply_overrides(config, updates, "--set")

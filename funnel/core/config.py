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
import math
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from funnel.core.errors import FunnelError


@dataclass(frozen=True)
class PathsConfig:
    """Where every artifact lives: the one place a path under HOME is spelled."""
    home: str = ".funnel"  # every artifact lives under this folder unless set otherwise

    @property
    def root(self) -> Path:
        return Path(self.home)

    @property
    def store(self) -> Path:
        return self.root / "store.sqlite"  # `funnel.core.store`

    @property
    def index(self) -> Path:
        return self.root / "index"  # inverted index: manifest.json + segments (`funnel.index.builder`)

    @property
    def dense_index(self) -> Path:
        return self.index / "dense"  # vector index (`funnel.index.vectors`)

    @property
    def models(self) -> Path:
        return self.root / "models"  # trained models, each published by rename

    @property
    def dual_encoder(self) -> Path:
        return self.models / "dual-encoder"

    @property
    def dual_encoder_folds(self) -> Path:
        return self.models / "dual-encoder-folds"  # out-of-fold encoders for coarse training

    @property
    def coarse_model(self) -> Path:
        return self.models / "coarse"

    @property
    def fusion(self) -> Path:
        return self.models / "fusion.json"  # the fine/coarse fusion weight the build chose (`ranking.training.fusion`)

    @property
    def cross_encoder(self) -> Path:
        return self.models / "cross-encoder"

    @property
    def pruned_cross_encoder(self) -> Path:
        return self.models / "cross-encoder-pruned"

    @property
    def features(self) -> Path:
        return self.root / "features"

    @property
    def pagerank(self) -> Path:
        return self.features / "pagerank.parquet"

    @property
    def doc_features(self) -> Path:
        return self.features / "doc_features.parquet"

    @property
    def parquet(self) -> Path:
        return self.root / "parquet"  # the store's export for Spark jobs

    @property
    def interactions_parquet(self) -> Path:
        return self.parquet / "interactions.parquet"  # the export's interaction log (`funnel pipeline cooccurrence`)

    @property
    def cooccurrence(self) -> Path:
        return self.features / "cooccurrence"  # item co-occurrence counts (`funnel.pipelines.cooccurrence_job`)

    @property
    def runs(self) -> Path:
        return self.root / "runs"  # TREC run files of `funnel eval`

    @property
    def judgements(self) -> Path:
        # ratings from the dashboard, a BEIR folder: queries.jsonl + qrels/ratings.tsv (`funnel.core.ratings`);
        # `funnel eval --data HOME/judgements --split ratings` evaluates on them
        return self.root / "judgements"

    @property
    def crawl(self) -> Path:
        return self.root / "crawl"

    @property
    def frontier(self) -> Path:
        return self.crawl / "frontier.sqlite"

    @property
    def build_log(self) -> Path:
        return self.root / "build.json"  # `funnel build`'s plan and actual minutes per step

    @property
    def rec_funnel(self) -> Path:
        return self.models / "rec"  # the fitted recommendation funnel (`funnel.ranking.rec.build.FittedFunnel`)


@dataclass(frozen=True)
class AnalyzerConfig:
    lowercase: bool = True
    unicode_form: str = "NFKC"  # "" disables Unicode normalisation
    stopwords: bool = True  # English and Chinese stop word lists in index/stopwords_*.txt
    stemmer: str = "english"  # any PyStemmer (Snowball) language, or "" for none
    chinese: bool = True  # segment CJK runs with jieba
    # shorter Latin tokens are dropped (CJK tokens are always kept). 1 keeps single letters and digits, as
    # Lucene's standard analyzer does ("type 1 diabetes" vs "type 2", "hepatitis B"): what short keyword
    # queries with numbers need; BM25 on SciFact dev and train is unchanged within noise
    # (benchmarks/results/analyzer.md). `funnel index` refuses to add to an index built with 2: `--rebuild` it.
    min_token_len: int = 1


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
    retry_backoff: float = 0.5  # seconds before the first retry, doubled for each further one
    obey_robots: bool = True
    sitemaps: bool = False  # also seed from the sitemaps robots.txt lists
    max_url_length: int = 2048  # longer URLs are not followed (spider traps grow URLs)
    near_dup_distance: int = 3  # SimHash bits within which pages are marked near-duplicates
    flush_every: int = 64  # pages per store transaction
    fetch_deadline: float = 60.0  # seconds for one request, connect to last byte (a drip server is cut off)
    robots_retries: int = 3  # re-reads of an unreachable robots.txt before its host's URLs wait for the next run
    robots_retry_wait: float = 5.0  # seconds before the first re-read, doubled for each further one


@dataclass(frozen=True)
class SparkConfig:
    master: str = "local[*]"
    driver_memory: str = "4g"
    shuffle_partitions: int = 8
    max_result_size: str = "2g"  # index shards travel to the driver, which merges them
    ui: bool = False  # the Spark web UI (port 4040)
    log_level: str = "WARN"
    index_shards: int = 0  # documents per index job are cut into this many shards; 0 = shuffle_partitions
    # "single": the shards are merged into one index (on the driver); "sharded": each executor writes its
    # shard as an index of its own under HOME/index/shard-NNN/ (`funnel pipeline index --shards N` picks it)
    index_layout: str = "single"


@dataclass(frozen=True)
class PageRankConfig:
    damping: float = 0.85
    tol: float = 1e-10  # L1 change between iterations
    max_iter: int = 200
    collapse_duplicates: bool = True  # a page linking twice to a target votes once (networkx DiGraph)


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
    reload_check_s: float = 2.0  # how often a request may look for a newly published index (0: every request)
    # true: one request at a time per profile's pipeline (the server before issue 21; kept for the load
    # benchmark's side-by-side); false: requests share the pipeline (`funnel.api.service`)
    pipeline_lock: bool = False
    # a front over `funnel serve --shard I` processes: their base URLs, comma-separated, one per shard in shard
    # order (shard 0 first); "" = score the home's index in this process (`funnel.index.remote`)
    shard_urls: str = ""
    shard_timeout_s: float = 5.0  # a query waits this long for every shard; later, it is answered 503 naming the shard


@dataclass(frozen=True)
class CoarseConfig:
    """LightGBM LambdaMART over cheap features (`funnel.ranking.serving.coarse`)."""
    train_depth: int = 200  # recall candidates per training query; keep it = pipeline.recall_k (what serving ranks)
    num_leaves: int = 15
    learning_rate: float = 0.05
    n_estimators: int = 500  # upper bound; early stopping on dev picks the number
    early_stopping: int = 50  # rounds without dev nDCG@10 gain before stopping
    min_child_samples: int = 20
    # Out-of-fold dual encoders for the train lists (`funnel.ranking.training.cross_fit`: no stacking leak; SciFact dev
    # 0.798 -> 0.814): used when HOME/models/dual-encoder-folds exists; `funnel build` trains K of them
    # (query towers only). 0: never.
    cross_fit: int = 4
    seed: int = 0
    max_train_queries: int = 0  # training lists from a seeded sample of this many judged queries (0: all)


@dataclass(frozen=True)
class FineConfig:
    """Cross-encoder fine ranking (`funnel.ranking.models.cross_encoder`) and its listwise training."""
    backbone: str = "minilm"  # starting weights: "minilm", "tiny" (tests) or a model folder
    model: str = ""  # the cross-encoder served (e.g. a pruned one); "" = HOME/models/cross-encoder
    max_length: int = 192  # tokens of query + document; longer documents are truncated
    group_size: int = 4  # 1 positive + (group_size - 1) hard negatives per training query
    negatives_depth: int = 30  # hard negatives are drawn from the top of this many BM25 results
    batch_queries: int = 8  # training queries (groups) per optimiser step
    pooling: str = "mean"  # head over the mean of the token states ("mean") or BERT's [CLS] pooler ("cls")
    learning_rate: float = 1e-4
    head_learning_rate: float = 1e-3  # learning rate of the pooler and classifier head, which start random (0: learning_rate)
    epochs: int = 3  # SciFact dev, BM25 top 20 re-ranked: 0.678 after 1 epoch, 0.720 after 2, 0.732 after 3 (CPU; [CLS] at lr 3e-5: 0.425, 0.588, 0.623)
    train_layers: int = 0  # fine-tune only the top N encoder layers (0: all)
    time_budget_min: float = 0.0  # stop training after this many minutes (0: no limit)
    eval_depth: int = 20  # per-epoch dev check: re-rank BM25's top N of each dev query, keep the best epoch (0: off)
    seed: int = 0
    batch_size: int = 32  # pairs per inference batch
    dtype: str = "auto"  # inference dtype on GPU: auto (bf16/fp16), fp16, bf16, fp32
    cpu_dtype: str = "fp32"  # inference on CPU: fp32, or int8 (Linear layers dynamically quantised: funnel.ranking.models.quantize)
    max_positives: int = 0  # positives per training query per epoch, drawn by grade (0: all); `funnel build` sets it to fit its budget
    max_steps: int = 0  # optimiser steps in all (0: epochs x groups); the learning-rate schedule is sized to it
    eval_queries: int = 0  # dev check on a seeded sample of this many dev queries (0: all); `funnel build` sets it to fit its budget


@dataclass(frozen=True)
class RerankConfig:
    """Final re-ranking (`funnel.ranking.serving.rerank`): what the user sees."""
    mmr_lambda: float = 1.0  # MMR relevance weight; 1.0 turns diversity off
    dedup_threshold: float = 0.97  # dense cosine above which a lower result is a near-duplicate (>1: off)
    per_host_cap: int = 0  # at most this many results per URL host (0: no cap)
    freshness_weight: float = 0.0  # added score x 2^(-age/half_life) for documents with a fetch time
    freshness_half_life_days: float = 30.0


@dataclass(frozen=True)
class PipelineConfig:
    """The funnel's shape: stages and candidate counts, per profile."""
    recall: str = "auto"  # "bm25", "hybrid", "dense", or "auto" (hybrid when a dense index exists)
    recall_k: int = 200  # candidates the coarse ranker scores (= coarse.train_depth, the lists it learned on)
    coarse_k: int = 100
    final_k: int = 10
    # concurrent requests' cross-encoder pairs and query encodings run as one batch, gathered for at most this
    # long (`funnel.ranking.serving.batching`; a lone request never waits); 0: each request runs its own
    batch_wait_ms: float = 3.0
    # with batching: requests running their Python parts at once (0: one per core); one waiting for a batched model
    # call gives its place up. More threads than cores in Python only fight over the GIL (`batching.CpuGate`)
    cpu_slots: int = 0
    cpu_fine_k: int = 3  # cross-encoder depth of the `cpu` profile (whole query p95 291 ms on an AMD EPYC 2-core VM; 4: 322 ms, 6: 372 ms)
    gpu_fine_k: int = 100  # cross-encoder depth of the `gpu` profile (fp16/bf16)
    cpu_fine_max_length: int = 128  # cross-encoder tokens per pair in the `cpu` profile
    gpu_fine_max_length: int = 256  # ... and in the `gpu` profile
    # fine score = cross-encoder logit + fine_weight x coarse score; -1: the weight `funnel build` chose on
    # held-out training queries (HOME/models/fusion.json), 32 without one (`funnel.ranking.serving.fine.fusion_choice`)
    fine_weight: float = -1.0
    stages: str = "recall,coarse,fine,rerank"  # drop a name to skip that stage


@dataclass(frozen=True)
class PruneConfig:
    """Attention-head / FFN pruning of a cross-encoder with distillation recovery (`funnel.ranking.training.prune`)."""
    target: float = 0.5  # fraction of all attention heads to remove
    ffn_target: float = 0.0  # fraction of FFN neurons to remove in every layer
    latency_budget: float = 0.0  # keep removing heads until latency <= this x the original (0: off)
    max_target: float = 0.75  # never remove more heads than this fraction, whatever the budget
    steps: int = 3  # pruning rounds; importance is recomputed on the pruned model each round
    depth: int = 20  # BM25 candidates per query, for importance and evaluation
    max_length: int = 0  # tokens per pair; 0: the length the model was trained with
    importance_split: str = "dev"
    importance_queries: int = 40  # seeded sample of judged queries for importance (0: all)
    eval_split: str = "dev"
    eval_queries: int = 0  # seeded sample for the nDCG@10 check (0: all)
    recover_split: str = "train"
    recover_steps: int = 400  # distillation steps (0: no recovery) (400 vs 800: benchmarks/results/pruning_sweeps.md)
    recover_group_size: int = 8  # 1 positive + BM25 negatives per group
    recover_batch_queries: int = 2  # groups per step
    recover_lr: float = 3e-5
    recover_pseudo_queries: int = 0  # document titles added as unjudged recovery queries (0: judged queries only); hurt on SciFact (benchmarks/results/pruning_sweeps.md)
    recover_time_budget_min: float = 0.0  # stop recovery after this many minutes (0: no limit)
    recover_schedule: str = "end"  # "end": all recover_steps after the last cut; "rounds": recover_steps / steps after every cut
    distill_alpha: float = 0.5  # weight of the label loss; 1 - alpha goes to matching the teacher (swept: benchmarks/results/pruning_sweeps.md)
    distill_temperature: float = 2.0
    distill_hidden: float = 0.0  # weight of the layer-by-layer hidden-state MSE to the teacher (0: logits only)
    seed: int = 0

@dataclass(frozen=True)
class RecallConfig:
    """First-stage recall (`funnel.ranking.serving.recall`): candidates per route and how routes are fused."""
    bm25_k: int = 1000  # candidates from the BM25 route
    dense_k: int = 1000  # candidates from the dense route
    fusion: str = "weighted"  # "weighted" (min-max normalised scores; best on SciFact dev) or "rrf" (reciprocal rank)
    rrf_k: int = 60  # RRF constant: score = sum over routes of 1 / (rrf_k + rank)
    dense_weight: float = 0.5  # weighted fusion: dense x w + bm25 x (1 - w), after normalising each route
    ann: str = "auto"  # vector search: "exact", "ivf", "hnsw", or "auto" (exact below 50k vectors or on GPU)
    nlist: int = 0  # IVF cells (0: 4 x sqrt(n))
    nprobe: int = 128  # IVF cells visited per query (recall@100 0.99 vs exact on 100k vectors: benchmarks/results/ann.md)
    hnsw_m: int = 16  # HNSW links per node (built with efConstruction 100)
    ef_search: int = 512  # HNSW candidate list at query time (raised to k when smaller; recall@100 0.99 at 512)
    pagerank_prior: float = 0.0  # BM25 route: add w x log(PageRank x N) to matched documents (0: off)
    # BM25 route: rank by the RM3-expanded query (pseudo-relevance feedback, `funnel.ranking.serving.prf`).
    # Off: on SciFact it hurts nDCG@10 at Anserini's lambda 0.5 and gains only within noise at the best
    # setting on train (below), on train and dev alike (benchmarks/results/prf.md)
    prf: bool = False
    prf_docs: int = 10  # feedback documents: the first pass's top n
    prf_terms: int = 10  # expansion terms kept from them
    prf_weight: float = 0.9  # lambda, the original query's share of the expanded query (chosen on SciFact train)


@dataclass(frozen=True)
class DenseConfig:
    """The dual encoder used to embed documents and queries (`funnel.ranking.models.dual_encoder`, `funnel embed`)."""
    model: str = ""  # model folder, "minilm" (zero-shot) or "" (HOME/models/dual-encoder if trained, else minilm)
    query_max_len: int = 64  # tokens per query
    doc_max_len: int = 256  # tokens per document (title + text)
    batch_size: int = 64  # texts per encoding batch
    device: str = "auto"
    dtype: str = "auto"  # encoding dtype on GPU (bf16/fp16); fp32 on CPU
    cpu_dtype: str = "fp32"  # serving queries on CPU: fp32, or int8 (query tower dynamically quantised: funnel.ranking.models.quantize)


@dataclass(frozen=True)
class TrainDenseConfig:
    """Dual-encoder training (`funnel.ranking.training.train_dense`): InfoNCE with in-batch and BM25 hard negatives."""
    backbone: str = "minilm"  # starting weights: "minilm", "tiny" (tests) or a backbone folder
    towers: str = "auto"  # "shared": one tower fine-tuned for both sides; "query": documents frozen (cheap on
    # a CPU: documents are encoded once); "auto": shared on a GPU, query on a CPU
    temperature: float = 0.05  # softmax temperature of InfoNCE (scale = 1 / temperature)
    hard_negatives: int = 7  # BM25-mined negatives per query (never a judged document); SciFact dev, query tower:
    # 1 negative at lr 2e-5 -> nDCG@10 0.730, 7 at 5e-5 -> 0.789 (benchmarks/results/logs/train_dense.log)
    negatives_depth: int = 30  # hard negatives are drawn from the top of this many BM25 results
    batch_size: int = 32  # queries per step; every other query's documents are in-batch negatives
    learning_rate: float = 5e-5
    epochs: int = 5
    query_max_len: int = 64
    doc_max_len: int = 256
    unsupervised: bool = False  # no judgements: pseudo-query pairs from the store's own documents
    unsupervised_mode: str = "crop"  # pseudo queries: "crop" (random word spans) or "sentence" (one sentence, ICT-like)
    unsupervised_pairs: int = 2000  # pseudo-query pairs per epoch in unsupervised mode
    time_budget_min: float = 0.0  # stop after this many minutes (0: no limit); the best checkpoint is kept
    amp: bool = True  # mixed precision on GPU (ignored on CPU)
    seed: int = 0
    max_positives: int = 0  # positives per training query per epoch, drawn by grade (0: all); `funnel build` sets it to fit its budget
    max_steps: int = 0  # optimiser steps in all (0: epochs x examples); the learning-rate schedule is sized to it


@dataclass(frozen=True)
class BuildConfig:
    """`funnel build`: the time budget it plans the training steps to (`funnel.cli.main.build`)."""
    budget_min: float = 60.0  # minutes for the whole build (0: no budget, every recipe runs in full)
    # where the build makes its choices (early stopping, best epoch): "carve" fits on TRAIN:fit and selects
    # on TRAIN:select (a share of the training queries, `funnel.core.judgements.SELECT_SHARE`), so the dev
    # split stays untouched for the figure; or a split's name (e.g. "dev") to fit on all of TRAIN and select there
    select_split: str = "carve"
    probe_steps: int = 3  # timed training steps per model, to estimate its minutes on this machine
    # share of the training time each model may take when the budget is short (the rest is redistributed)
    dense_share: float = 0.25
    folds_share: float = 0.25  # all cross-fit fold encoders together
    fine_share: float = 0.5


@dataclass(frozen=True)
class RecConfig:
    """Recommendation (`funnel.ranking.rec`): serving limits, the fit knobs of `funnel build --task rec`, and
    rerank overrides applied at serve time over the setting dev chose at build (-1 / "": keep that setting)."""
    max_k: int = 50  # largest k a request may ask for (at most coarse_k: the fine stage's list)
    default_k: int = 10
    # fit (`funnel.ranking.rec.build.fit_funnel`); 0 = the recipe's default
    sasrec_epochs: int = 0  # cap on SASRec epochs (early stopping on dev picks fewer)
    sasrec_dim: int = 0
    sasrec_layers: int = 0
    sasrec_max_len: int = 0
    two_tower_epochs: int = 0  # cap on two-tower epochs
    two_tower_dim: int = 0
    two_tower_max_len: int = 0
    train_targets: int = 10  # last train items per user the LightGBM rankers learn from
    recall_k: int = 200  # candidates of the recall stage
    coarse_k: int = 50  # survivors of the coarse stage (the fine stage's list)
    seed: int = 0  # seed of the torch models
    threads: int = 2  # LightGBM threads
    device: str = "auto"
    # serve-time rerank overrides
    blocked: str = ""  # comma-separated item ids never shown
    pinned: str = ""  # comma-separated ITEM:SLOT (0-based) pairs
    mmr_lambda: float = -1.0  # genre MMR relevance weight in [0, 1]; -1: as fitted
    max_per_genre: int = -1  # per-genre cap; 0: no cap, -1: as fitted
    popularity_damping: float = -1.0  # relevance minus this x popularity percentile; -1: as fitted


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
    coarse: CoarseConfig = field(default_factory=CoarseConfig)
    fine: FineConfig = field(default_factory=FineConfig)
    rerank: RerankConfig = field(default_factory=RerankConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    recall: RecallConfig = field(default_factory=RecallConfig)
    dense: DenseConfig = field(default_factory=DenseConfig)
    train_dense: TrainDenseConfig = field(default_factory=TrainDenseConfig)
    build: BuildConfig = field(default_factory=BuildConfig)
    rec: RecConfig = field(default_factory=RecConfig)

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


def _number(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False,
            hi_open: bool = False) -> Callable[[Any], str | None]:
    """A check that a number lies in [lo, hi] (open ends when asked); None when it does."""
    def check(value: Any) -> str | None:
        ok = (lo is None or (value > lo if lo_open else value >= lo)) and \
             (hi is None or (value < hi if hi_open else value <= hi))
        if ok:
            return None
        if lo is not None and hi is not None:
            return f"a number in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
        return f"a number {'>' if lo_open else '>='} {lo}" if lo is not None else f"a number <= {hi}"
    return check


def _choice(*options: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        return None if value in options else "one of " + ", ".join(repr(o) for o in options)
    return check


def _stage_list(value: Any) -> str | None:
    names = [s.strip() for s in value.split(",") if s.strip()]
    bad = [s for s in names if s not in STAGE_NAMES]
    if bad or "recall" not in names:
        return f"a comma-separated list of {', '.join(STAGE_NAMES)} that includes recall"
    return None


def _device(value: Any) -> str | None:
    return None if re.fullmatch(r"auto|cpu|cuda(:\d+)?", value) else "'auto', 'cpu', 'cuda' or 'cuda:N'"


def _urls(value: Any) -> str | None:
    urls = [u.strip() for u in value.split(",") if u.strip()]
    ok = all(re.fullmatch(r"https?://[^\s/,]+/?", u) for u in urls)
    return None if ok else "comma-separated base URLs, e.g. 'http://10.0.0.5:8101,http://10.0.0.6:8101'"


def _pinned(value: Any) -> str | None:
    pairs = [p.strip() for p in value.split(",") if p.strip()]
    ok = all(re.fullmatch(r"[^:\s]+:\d+", p) for p in pairs)
    return None if ok else "comma-separated ITEM:SLOT pairs with 0-based slots, e.g. '50:0,181:3'"


# Ranking stages `pipeline.stages` may name, in order (`ranking.serving.pipeline` builds them).
STAGE_NAMES = ("recall", "coarse", "fine", "rerank")
_GPU_DTYPES = _choice("auto", "fp16", "bf16", "fp32")
_CPU_DTYPES = _choice("fp32", "int8")
_FRACTION = _number(0, 1)
_POSITIVE = _number(0, lo_open=True)
_PORT = _number(1, 65535)

# Ranges and choices beyond the type. Every other number must be finite, and every other int >= 0
# (all of them are counts, sizes or lengths) except seeds.
_CHECKS: dict[str, Callable[[Any], str | None]] = {
    "analyzer.unicode_form": _choice("", "NFC", "NFKC", "NFD", "NFKD"),
    "bm25.k1": _number(0), "bm25.b": _FRACTION, "bm25.scorer": _choice("bm25", "tfidf"),
    "index.batch_docs": _number(1), "index.merge_max_segments": _number(1),
    "crawl.concurrency": _number(1), "crawl.per_host_concurrency": _number(1), "crawl.per_host_delay": _number(0),
    "crawl.max_bytes": _number(1), "crawl.connect_timeout": _POSITIVE, "crawl.read_timeout": _POSITIVE,
    "crawl.retry_backoff": _number(0), "crawl.max_url_length": _number(1), "crawl.near_dup_distance": _number(0, 64),
    "crawl.flush_every": _number(1), "crawl.fetch_deadline": _POSITIVE, "crawl.robots_retry_wait": _number(0),
    "spark.shuffle_partitions": _number(1), "spark.index_layout": _choice("single", "sharded"),
    "spark.log_level": _choice("ALL", "DEBUG", "INFO", "WARN", "ERROR", "FATAL", "OFF", "TRACE"),
    "pagerank.damping": _number(0, 1, hi_open=True), "pagerank.tol": _POSITIVE, "pagerank.max_iter": _number(1),
    "serve.port": _PORT, "serve.dashboard_port": _PORT, "serve.max_query_chars": _number(1),
    "serve.max_k": _number(1), "serve.default_k": _number(1), "serve.default_profile": _choice("cpu", "gpu"),
    "serve.workers": _number(1), "serve.reload_check_s": _number(0), "serve.shard_urls": _urls,
    "serve.shard_timeout_s": _POSITIVE, "pipeline.batch_wait_ms": _number(0, 1000),
    "coarse.train_depth": _number(1), "coarse.num_leaves": _number(2), "coarse.learning_rate": _POSITIVE,
    "coarse.n_estimators": _number(1),
    "fine.max_length": _number(1), "fine.group_size": _number(2), "fine.negatives_depth": _number(1),
    "fine.batch_queries": _number(1), "fine.pooling": _choice("mean", "cls"), "fine.learning_rate": _POSITIVE,
    "fine.head_learning_rate": _number(0), "fine.epochs": _number(1), "fine.time_budget_min": _number(0),
    "fine.batch_size": _number(1), "fine.dtype": _GPU_DTYPES, "fine.cpu_dtype": _CPU_DTYPES,
    "rerank.mmr_lambda": _FRACTION, "rerank.freshness_weight": _number(0),
    "rerank.freshness_half_life_days": _POSITIVE,
    "pipeline.recall": _choice("auto", "bm25", "hybrid", "dense"), "pipeline.recall_k": _number(1),
    "pipeline.coarse_k": _number(1), "pipeline.final_k": _number(1), "pipeline.cpu_fine_max_length": _number(1),
    "pipeline.gpu_fine_max_length": _number(1), "pipeline.stages": _stage_list,
    "pipeline.fine_weight": lambda v: None if v == -1 or v >= 0 else "-1 (the build's choice) or a weight >= 0",
    "prune.target": _number(0, 1, hi_open=True), "prune.ffn_target": _number(0, 1, hi_open=True),
    "prune.latency_budget": _number(0), "prune.max_target": _number(0, 1, hi_open=True), "prune.steps": _number(1),
    "prune.depth": _number(1), "prune.recover_group_size": _number(2), "prune.recover_batch_queries": _number(1),
    "prune.recover_lr": _POSITIVE, "prune.recover_time_budget_min": _number(0),
    "prune.recover_schedule": _choice("end", "rounds"), "prune.distill_alpha": _FRACTION,
    "prune.distill_temperature": _POSITIVE, "prune.distill_hidden": _number(0),
    "recall.bm25_k": _number(1), "recall.dense_k": _number(1), "recall.fusion": _choice("weighted", "rrf"),
    "recall.dense_weight": _FRACTION, "recall.ann": _choice("auto", "exact", "ivf", "hnsw"),
    "recall.nprobe": _number(1), "recall.hnsw_m": _number(2), "recall.ef_search": _number(1),
    "recall.prf_docs": _number(1), "recall.prf_terms": _number(1), "recall.prf_weight": _FRACTION,
    "dense.query_max_len": _number(1), "dense.doc_max_len": _number(1), "dense.batch_size": _number(1),
    "dense.device": _device, "dense.dtype": _GPU_DTYPES, "dense.cpu_dtype": _CPU_DTYPES,
    "train_dense.towers": _choice("auto", "shared", "query"), "train_dense.temperature": _POSITIVE,
    "train_dense.negatives_depth": _number(1), "train_dense.batch_size": _number(1),
    "train_dense.learning_rate": _POSITIVE, "train_dense.epochs": _number(1), "train_dense.query_max_len": _number(1),
    "train_dense.doc_max_len": _number(1), "train_dense.unsupervised_mode": _choice("crop", "sentence"),
    "train_dense.unsupervised_pairs": _number(1), "train_dense.time_budget_min": _number(0),
    "build.dense_share": _FRACTION, "build.folds_share": _FRACTION, "build.fine_share": _FRACTION,
    "rec.max_k": _number(1), "rec.default_k": _number(1), "rec.train_targets": _number(1),
    "rec.recall_k": _number(1), "rec.coarse_k": _number(1), "rec.threads": _number(1), "rec.device": _device,
    "rec.pinned": _pinned, "rec.mmr_lambda": _number(-1, 1), "rec.max_per_genre": _number(-1),
    "rec.popularity_damping": _number(-1, 1),
}


def config_problems(config: Config) -> list[str]:
    """One line per value out of its range or choices: ``section.key = value: expected ...``."""
    problems = []
    for section in fields(config):
        values = getattr(config, section.name)
        for f in fields(values):
            name, value = f"{section.name}.{f.name}", getattr(values, f.name)
            expected = None
            if isinstance(value, float) and not math.isfinite(value):
                expected = "a finite number"
            elif name in _CHECKS:
                expected = _CHECKS[name](value)
            elif isinstance(value, int) and not isinstance(value, bool) and f.name != "seed" and value < 0:
                expected = "a number >= 0"
            if expected:
                problems.append(f"{name} = {value!r}: expected {expected}")
    if config.serve.default_k > config.serve.max_k:
        problems.append(f"serve.default_k = {config.serve.default_k}: expected at most serve.max_k "
                        f"({config.serve.max_k})")
    rec = config.rec
    if rec.default_k > rec.max_k:
        problems.append(f"rec.default_k = {rec.default_k}: expected at most rec.max_k ({rec.max_k})")
    if rec.max_k > rec.coarse_k:
        problems.append(f"rec.max_k = {rec.max_k}: expected at most rec.coarse_k ({rec.coarse_k}), "
                        "the length of the list the rerank stage chooses from")
    if rec.coarse_k > rec.recall_k:
        problems.append(f"rec.coarse_k = {rec.coarse_k}: expected at most rec.recall_k ({rec.recall_k})")
    if -1 < rec.mmr_lambda < 0:
        problems.append(f"rec.mmr_lambda = {rec.mmr_lambda}: expected -1 (as fitted) or a number in [0, 1]")
    if -1 < rec.popularity_damping < 0:
        problems.append(f"rec.popularity_damping = {rec.popularity_damping}: expected -1 (as fitted) or a number "
                        "in [0, 1]")
    return problems


def validate_config(config: Config, origin: str = "config") -> Config:
    """Return `config` if every value is in range; else one FunnelError listing each bad key."""
    problems = config_problems(config)
    if problems:
        raise FunnelError(f"{origin}: {len(problems)} invalid value(s):\n  " + "\n  ".join(problems))
    return config


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (),
                home: str | Path | None = None) -> Config:
    """Defaults, then the TOML file at `path` (if any), then `home` (``--home``, taken as it is: no
    quoting), then ``section.key=value`` overrides; the result is validated as a whole."""
    config = Config()
    sources = []
    if path is not None:
        path = Path(path)
        if path.is_dir():
            raise FunnelError(f"config file {path} is a folder, expected a TOML file")
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FunnelError(f"config file {path} does not exist") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise FunnelError(f"config file {path} is not valid TOML: {exc}") from None
        config = apply_overrides(config, data, str(path))
        sources.append(str(path))
    if home is not None:
        config = replace(config, paths=replace(config.paths, home=str(home)))
    if overrides:
        sources.append("--set")
    config = with_overrides(config, overrides, "--set", validate=False)
    return validate_config(config, "config" + (f" ({' and '.join(sources)})" if sources else ""))


def with_overrides(config: Config, overrides: list[str] | tuple[str, ...], origin: str = "--set",
                   validate: bool = True) -> Config:
    """`config` with ``section.key=value`` lines applied (the values TOML literals or bare strings)."""
    updates: dict[str, dict[str, Any]] = {}
    for text in overrides:
        section, key, value = _parse_override(text)
        updates.setdefault(section, {})[key] = value
    config = apply_overrides(config, updates, origin)
    return validate_config(config, origin) if validate else config

"""Spark co-occurrence job: an interaction log (the store export's ``interactions.parquet``) ->
``HOME/features/cooccurrence/``, the item-item counts ItemKNN is fitted from, for logs that outgrow one
machine.

The counts are those of `funnel.ranking.rec.cooccurrence.cooccurrence_counts` on the same users,
exactly (``tests/pipelines/test_cooccurrence_job.py``): a user-item pair counts once however often it
repeats; ``users`` of an item is the number of users who interacted with it, ``count`` of a pair the
number who interacted with both. ``ItemKNN(n, s).fit_counts(load_cooccurrence(DIR, ds.item_ids))``
then fits the same model as ``ItemKNN(n, s).fit(histories, ds.n_items)``.

``holdout_last = n`` drops each user's last n interactions first, in the order of the
leave-last-out split (`funnel.ranking.rec.split.build_dataset`): by timestamp, ties by item id in the
split's natural order (numerically when every item id is made of digits 0-9, else as strings); a user
with no more than n interactions keeps them all. So ``holdout_last=2`` counts exactly the train part
of the split, what the recommendation funnel fits ItemKNN on. (The split decides numeric or string
order over its whole catalogue: items listed but never interacted with count too, so they must be all
digits as well for the two to agree on ties.)

How: deduplicate (user, item), then self-join each user's items (item_a before item_b) and count per
pair. A user with k items makes k (k - 1) / 2 rows: the cost grows with the square of the heaviest
histories, not with the catalogue.

Files
-----
``HOME/features/cooccurrence/`` (a folder, written as ``.tmp-cooccurrence`` beside it and swapped in by
`funnel.core.publish.publish_folder`: a reader sees the old or the new one):
- ``pairs.parquet`` (a folder of Parquet part files): ``item_a`` (string), ``item_b`` (string),
  ``count`` (long, >= ``min_count``). Each unordered pair once, ``item_a`` before ``item_b`` in the
  split's item order (so item_a's index in ``RecDataset.item_ids`` is the smaller); pairs of fewer
  than ``min_count`` users are left out.
- ``items.parquet``: ``item_id`` (string), ``users`` (long, >= 1): every item of the counted part.
- ``meta.json``: ``format_version`` (1), ``input``, ``dataset``, ``holdout_last``, ``min_count``,
  ``numeric_ids`` (the item order used), ``n_users``, ``n_items``, ``n_pairs``, ``seconds``.

Input: Parquet with ``user_id`` and ``item_id`` (string, or integers read as their decimal strings)
and ``ts`` (an integer type, e.g. Unix seconds); other columns are ignored, rows with a null in these
three are dropped. When it has a ``dataset`` column (the store's export), the rows of one dataset are
counted: ``dataset=`` names it, or the log must hold a single one.
"""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from funnel.core.errors import FunnelError, InputError
from funnel.core.publish import fresh_tmp, publish_folder

FORMAT_VERSION = 1
COLUMNS = ("user_id", "item_id", "ts")


@dataclass
class CooccurrenceResult:
    out: Path
    n_users: int
    n_items: int
    n_pairs: int
    numeric_ids: bool
    seconds: float


def require_input(path: str | Path) -> None:
    """Fail with a message a user can act on when a local input is missing (URLs are left to Spark)."""
    if "://" not in str(path) and not Path(path).exists():
        raise FunnelError(f"{path} not found: expected a Parquet interaction log (user_id, item_id, ts); the "
                          "store's export writes interactions.parquet when the store holds interactions")


def run_cooccurrence_job(spark, interactions_parquet: str | Path, out_path: str | Path, *, holdout_last: int = 0,
                         min_count: int = 1, dataset: str | None = None) -> CooccurrenceResult:
    """Count co-occurrences of the log's items per user with Spark; writes ``out_path`` (see Files)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    if holdout_last < 0:
        raise InputError(f"cooccurrence: holdout_last must be >= 0, got {holdout_last}")
    if min_count < 1:
        raise InputError(f"cooccurrence: min_count must be >= 1, got {min_count}")
    t0 = time.perf_counter()
    require_input(interactions_parquet)
    log = spark.read.parquet(str(interactions_parquet))
    types = {f.name: f.dataType for f in log.schema.fields}
    missing = [c for c in COLUMNS if c not in types]
    if missing:
        raise InputError(f"{interactions_parquet}: missing columns {missing}; expected user_id, item_id, ts "
                         f"(found {sorted(types)})")
    integral = (T.ByteType, T.ShortType, T.IntegerType, T.LongType)
    for c, ok in (("user_id", (T.StringType, *integral)), ("item_id", (T.StringType, *integral)), ("ts", integral)):
        if not isinstance(types[c], ok):
            want = "an integer type" if c == "ts" else "string or an integer type"
            raise InputError(f"{interactions_parquet}: column {c} is {types[c].simpleString()}; expected {want}")
    if dataset is not None:
        if "dataset" not in types:
            raise InputError(f"{interactions_parquet}: no dataset column to pick dataset {dataset!r} from")
        log = log.where(F.col("dataset") == dataset)
    log = (log.select(F.col("user_id").cast("string"), F.col("item_id").cast("string"), F.col("ts").cast("long"),
                      *([F.col("dataset")] if "dataset" in types else []))
           .where(F.col("user_id").isNotNull() & F.col("item_id").isNotNull() & F.col("ts").isNotNull()))

    # One pass for what decides the rest: the item order, and whether the log is usable.
    aggs = [F.count(F.lit(1)).alias("rows"), F.count_distinct("user_id").alias("users"),
            F.min(F.col("item_id").rlike("^[0-9]+$").cast("int")).alias("numeric")]
    if "dataset" in types and dataset is None:
        aggs.append(F.array_sort(F.collect_set("dataset")).alias("datasets"))
    stats = log.agg(*aggs).first()
    if not stats["rows"]:
        which = f" of dataset {dataset!r}" if dataset is not None else ""
        raise InputError(f"{interactions_parquet}: holds no interactions{which}")
    datasets = stats.asDict().get("datasets") or []
    if len(datasets) > 1:
        raise InputError(f"{interactions_parquet}: holds the interactions of {len(datasets)} datasets "
                         f"({', '.join(datasets[:5])}): pick one (--dataset)")
    numeric = bool(stats["numeric"])

    # The split's item order as a sort key: digit strings compare as numbers (fewer digits first, once
    # leading zeros are gone; the raw id breaks ties such as "07" and "7"), anything else as strings.
    if numeric:
        trimmed = F.regexp_replace("item_id", "^0+", "")
        key = F.struct(F.length(trimmed).alias("len"), trimmed.alias("digits"), F.col("item_id").alias("id"))
    else:
        key = F.col("item_id")
    log = log.withColumn("k", key)
    if holdout_last:
        by_user = Window.partitionBy("user_id")
        log = (log.withColumn("pos", F.row_number().over(by_user.orderBy("ts", "k")))
               .withColumn("n", F.count(F.lit(1)).over(by_user))
               .where((F.col("n") <= holdout_last) | (F.col("pos") <= F.col("n") - holdout_last)))
    user_items = log.select("user_id", "item_id", "k").distinct().cache()
    items = user_items.groupBy("item_id").agg(F.count(F.lit(1)).alias("users"))
    a = user_items.select("user_id", F.col("item_id").alias("item_a"), F.col("k").alias("ka"))
    b = user_items.select("user_id", F.col("item_id").alias("item_b"), F.col("k").alias("kb"))
    pairs = (a.join(b, "user_id").where(F.col("ka") < F.col("kb"))
             .groupBy("item_a", "item_b").agg(F.count(F.lit(1)).alias("count"))
             .where(F.col("count") >= min_count))

    out_path = Path(out_path)
    tmp = fresh_tmp(out_path)  # HOME/features/.tmp-cooccurrence, swapped in whole at the end
    try:
        pairs.write.parquet(str(tmp / "pairs.parquet"))
        items.write.parquet(str(tmp / "items.parquet"))
        n_pairs = spark.read.parquet(str(tmp / "pairs.parquet")).count()
        n_items = spark.read.parquet(str(tmp / "items.parquet")).count()
        seconds = time.perf_counter() - t0
        meta = {"format_version": FORMAT_VERSION, "input": str(interactions_parquet), "dataset": dataset,
                "holdout_last": holdout_last, "min_count": min_count, "numeric_ids": numeric,
                "n_users": int(stats["users"]), "n_items": n_items, "n_pairs": n_pairs, "seconds": round(seconds, 3)}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
        publish_folder(tmp, out_path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        user_items.unpersist()
    return CooccurrenceResult(out_path, int(stats["users"]), n_items, n_pairs, numeric, seconds)

"""The data: how many sentence pairs each step kept or dropped."""

from __future__ import annotations

from typing import TYPE_CHECKING

from transfer_neurons.lazy import lazy_import
from transfer_neurons.reporting.registry import RESULTS, TABLES, ResultFile, SummaryTable

if TYPE_CHECKING:
    import polars as pl
else:
    pl = lazy_import("polars")

RESULTS.register(ResultFile("dropped_pairs", "prepare_corpus", "dropped"))
RESULTS.register(ResultFile("detection_pairs", "dump_activations", "pairs"))


def data_summary(dropped: pl.DataFrame, detection_pairs: pl.DataFrame) -> pl.DataFrame:
    """How many pairs each step kept or dropped, per language and split (tidy: language, split, step, pairs).

    ``dropped`` lists the pairs ``corpus.duplicates`` dropped (before splitting, so split "all");
    ``detection_pairs`` every pair of each split with ``kept`` (false: over ``runtime.max_tokens``).
    """
    duplicates = (
        dropped.group_by("language", "reason")
        .len("pairs")
        .select("language", pl.lit("all").alias("split"), ("dropped: " + pl.col("reason")).alias("step"), "pairs")
    )
    per_split = detection_pairs.group_by("language", "split").agg(
        pl.len().alias("in split"),
        (~pl.col("kept")).sum().alias("dropped: over runtime.max_tokens"),
        pl.col("kept").sum().alias("used for detection"),
    )
    steps = per_split.unpivot(index=["language", "split"], variable_name="step", value_name="pairs")
    order = ["in split", "dropped: over runtime.max_tokens", "used for detection"]
    return (
        pl.concat([duplicates.cast({"pairs": pl.Int64}), steps.cast({"pairs": pl.Int64})])
        .with_columns(pl.col("step").replace_strict(order, range(len(order)), default=-1).alias("order"))
        .sort("language", "split", "order", "step")
        .drop("order")
    )


TABLES.register(
    SummaryTable(
        "data_summary",
        ("dropped_pairs", "detection_pairs"),
        lambda results, settings: data_summary(results["dropped_pairs"], results["detection_pairs"]),
    )
)

"""Write magnitudes: where each condition's neurons sit among their layers' writers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from transfer_neurons.lazy import lazy_import
from transfer_neurons.reporting.registry import RESULTS, TABLES, ResultFile, SummaryTable
from transfer_neurons.reporting.summaries import group_order, main_conditions, with_group

if TYPE_CHECKING:
    import polars as pl
else:
    pl = lazy_import("polars")

RESULTS.register(ResultFile("magnitudes", "write_magnitudes", "magnitudes"))
RESULTS.register(ResultFile("conditions", "conditions", "conditions"))


def magnitude_summary(magnitudes: pl.DataFrame, conditions: pl.DataFrame, main_label: str) -> pl.DataFrame:
    """Where each set's neurons sit among their layers' writers: per language, condition group and
    type, the median percentile and the median ratio of magnitude to the layer's median magnitude."""
    layer_median = magnitudes.group_by("model", "language", "layer").agg(pl.col("magnitude").median().alias("median"))
    sized = magnitudes.join(layer_median, on=["model", "language", "layer"]).with_columns(
        (pl.col("magnitude") / pl.col("median")).alias("ratio_to_layer_median")
    )
    sets = with_group(main_conditions(conditions.filter(pl.col("layer").is_not_null()), main_label))
    return (
        sets.join(sized, on=["model", "language", "layer", "neuron"])
        .group_by("model", "language", "group")
        .agg(
            pl.len().alias("neurons"),
            pl.col("percentile").median().alias("median_percentile"),
            pl.col("ratio_to_layer_median").median().alias("median_ratio_to_layer_median"),
        )
        .sort("model", "language", group_order())
    )


TABLES.register(
    SummaryTable(
        "magnitude_summary",
        ("magnitudes", "conditions"),
        lambda results, settings: magnitude_summary(results["magnitudes"], results["conditions"], settings.main_label),
    )
)

"""Detector agreement: how many of the reference detector's top-N neurons each other detector also finds."""

from __future__ import annotations

from typing import TYPE_CHECKING

from transfer_neurons.lazy import lazy_import
from transfer_neurons.reporting.numbers import rounded
from transfer_neurons.reporting.registry import FIGURES, MODEL_SCOPE, RESULTS, TABLES, Figure, ResultFile, SummaryTable

if TYPE_CHECKING:
    import altair as alt
    import polars as pl
else:
    alt = lazy_import("altair")
    pl = lazy_import("polars")

RESULTS.register(ResultFile("agreement", "detector_agreement", "table"))


def agreement_summary(agreement: pl.DataFrame, main_label: str) -> pl.DataFrame:
    """Per other detector and type: the share of the reference detector's top-N it also finds."""
    return (
        agreement.filter(pl.col("top_n_label") == str(main_label))
        .group_by("reference", "detector", "neuron_type")
        .agg((pl.col("shared").sum() / pl.col("n_reference").sum()).alias("shared_share"))
        .sort("reference", "detector", "neuron_type")
    )


def detector_agreement_chart(agreement: pl.DataFrame, title: str) -> alt.FacetChart:
    """Per layer: the reference detector's top-N neurons and how many each other detector shares."""
    reference = (
        agreement.group_by("language", "neuron_type", "layer")
        .agg(pl.col("n_reference").first().alias("value"))
        .sort("language", "neuron_type", "layer")  # the spec's rows in one order from run to run
    )
    shared = agreement.select(
        "language",
        "neuron_type",
        "layer",
        pl.col("shared").alias("value"),
        ("shared with " + pl.col("detector")).alias("count"),
    )
    long = pl.concat([reference.with_columns(pl.lit("top-N of the reference").alias("count")), shared], how="diagonal")
    return (
        alt.Chart(long)
        .mark_bar(opacity=0.8)
        .encode(
            x=alt.X("layer:O"),
            y=alt.Y("value:Q", title="neurons", stack=None),
            color=alt.Color("count:N", scale=alt.Scale(range=["#1b9e77", "#7570b3", "#e7298a", "#bbbbbb"])),
            tooltip=["language:N", "neuron_type:N", "layer:O", "count:N", "value:Q"],
        )
        .properties(width=260, height=110)
        .facet(row=alt.Row("language:N", title=None), column=alt.Column("neuron_type:N", title=None))
        .properties(title=title)
    )


TABLES.register(
    SummaryTable(
        "agreement_summary",
        ("agreement",),
        lambda results, settings: agreement_summary(results["agreement"], settings.main_label),
        min_detectors=2,
    )
)
FIGURES.register(
    Figure(
        "detector_agreement",
        MODEL_SCOPE,
        detector_agreement_chart,
        "Beyond the paper: how many of the reference detector's top-N neurons (the one the "
        "evaluations use) each other configured detector also finds, per layer.",
        inputs=("agreement",),
        prepare=lambda results, context: results["agreement"].filter(
            pl.col("top_n_label") == str(context.settings.main_label)
        ),
        numbers=lambda tables, context: rounded(tables["agreement_summary"]),
        min_detectors=2,
    )
)

"""LAPE: language-specific neurons by activation probability entropy, and their overlap with transfer neurons."""

from __future__ import annotations

from typing import TYPE_CHECKING

from transfer_neurons.lazy import lazy_import
from transfer_neurons.reporting.numbers import rounded
from transfer_neurons.reporting.registry import (
    FIGURES,
    MODEL_SCOPE,
    RESULTS,
    TABLES,
    Figure,
    FigureContext,
    ResultFile,
    Results,
    SummaryTable,
    Tables,
)

if TYPE_CHECKING:
    import altair as alt
    import polars as pl
else:
    alt = lazy_import("altair")
    pl = lazy_import("polars")

RESULTS.register(ResultFile("lape", "lape", "neurons"))
RESULTS.register(ResultFile("lape_overlap", "lape_overlap", "overlap"))


def lape_summary(lape: pl.DataFrame, overlap: pl.DataFrame) -> pl.DataFrame:
    """Per language: how many LAPE neurons and in which layers; per type, their overlap with the
    transfer neurons over all layers, its chance expectation and hypergeometric p."""
    from scipy import stats

    sizes = lape.group_by("model", "language").agg(
        pl.len().alias("lape_neurons"), pl.col("layer").median().alias("median_layer")
    )
    totals = overlap.group_by("model", "language", "neuron_type").agg(
        pl.col("overlap").sum(),
        pl.col("n_transfer").sum(),
        pl.col("expected").sum().alias("expected_by_layer"),
        (pl.col("d_mlp") * pl.col("n_layers")).first().alias("population"),
    )
    table = totals.join(sizes, on=["model", "language"], how="left").with_columns(pl.col("lape_neurons").fill_null(0))
    p_values = [
        float(stats.hypergeom.sf(row["overlap"] - 1, row["population"], row["lape_neurons"], row["n_transfer"]))
        for row in table.iter_rows(named=True)
    ]
    return table.with_columns(pl.Series("p_value", p_values)).sort("model", "language", "neuron_type")


def lape_layer_counts(results: Results, context: FigureContext) -> pl.DataFrame:
    lape = results["lape"]
    grid = (
        lape.select("language")
        .unique()
        .join(pl.DataFrame({"layer": list(range(context.facts["n_layers"]))}, schema={"layer": pl.Int32}), how="cross")
    )
    counts = lape.group_by("language", "layer").len("neurons")
    return grid.join(counts, on=["language", "layer"], how="left").fill_null(0).sort("language", "layer")


def lape_layers_chart(counts: pl.DataFrame, title: str) -> alt.FacetChart:
    """Bars: how many LAPE language-specific neurons each layer has, per language."""
    return (
        alt.Chart(counts)
        .mark_bar(color="#7570b3")
        .encode(
            x=alt.X("layer:O", title="layer"),
            y=alt.Y("neurons:Q", title="LAPE neurons"),
            tooltip=["language:N", "layer:O", "neurons:Q"],
        )
        .properties(width=320, height=90)
        .facet(row=alt.Row("language:N", title=None))
        .properties(title=title)
    )


def lape_overlap_chart(overlap: pl.DataFrame, title: str) -> alt.FacetChart:
    """Per layer: transfer neurons that are also LAPE neurons of the language, against chance."""
    base = alt.Chart(overlap).encode(x=alt.X("layer:O", title="layer"))
    bars = base.mark_bar(color="#1b9e77").encode(
        y=alt.Y("overlap:Q", title="transfer neurons that are LAPE neurons"),
        tooltip=["language:N", "neuron_type:N", "layer:O", "overlap:Q", "n_transfer:Q", "n_lape:Q",
                 alt.Tooltip("expected:Q", format=".2f"), alt.Tooltip("jaccard:Q", format=".3f"),
                 alt.Tooltip("p_value:Q", format=".2g")],
    )  # fmt: skip
    chance = base.mark_tick(color="black", thickness=2).encode(y="expected:Q")
    return (
        alt.layer(bars, chance, data=overlap)
        .properties(width=260, height=100)
        .facet(row=alt.Row("language:N", title=None), column=alt.Column("neuron_type:N", title=None))
        .properties(title=title)
    )


def lape_numbers(tables: Tables, context: FigureContext) -> pl.DataFrame:
    table = tables["lape_summary"]
    return rounded(table.select("language", "neuron_type", "lape_neurons", "n_transfer", "overlap",
                                "expected_by_layer", "p_value"), 4)  # fmt: skip


TABLES.register(
    SummaryTable(
        "lape_summary",
        ("lape", "lape_overlap"),
        lambda results, settings: lape_summary(results["lape"], results["lape_overlap"]),
        requires="lape",
    )
)
FIGURES.register(
    Figure(
        "lape_layers",
        MODEL_SCOPE,
        lape_layers_chart,
        "LAPE language-specific neurons (Tang et al., ACL 2024): the lowest-entropy 1 % of neurons by how "
        "their activation probability spreads over languages. Tang et al. find them mostly in the top and "
        "bottom layers.",
        table="lape_summary",
        inputs=("lape",),
        prepare=lape_layer_counts,
        numbers=lape_numbers,
        requires="lape",
    )
)
FIGURES.register(
    Figure(
        "lape_overlap",
        MODEL_SCOPE,
        lape_overlap_chart,
        "How many of a language's transfer neurons are also its LAPE language-specific neurons, per layer; "
        "the tick is the overlap two random sets of those sizes would have. Type-2 neurons, which the paper "
        "finds more language-specific, should overlap more than Type-1.",
        table="lape_summary",
        inputs=("lape_overlap",),
        prepare=lambda results, context: results["lape_overlap"],
        numbers=lape_numbers,
        requires="lape",
    )
)

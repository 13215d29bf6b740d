"""Altair figures, saved both as PNG (through vl-convert) and as the Vega-Lite JSON."""

from __future__ import annotations

from pathlib import Path

import altair as alt
import polars as pl

TYPE_COLOURS = alt.Scale(domain=["type1", "type2"], range=["#1b9e77", "#d95f02"])
PER_LAYER_TOP_K = 10


def save_chart(chart: alt.TopLevelMixin, png_path: Path, json_path: Path) -> None:
    """Write the PNG and the Vega-Lite spec of ``chart``."""
    png_path.parent.mkdir(parents=True, exist_ok=True)
    chart.save(str(json_path), format="json")
    chart.save(str(png_path), format="png", scale_factor=2)


def layer_counts(top_neurons: pl.DataFrame, n_layers: int) -> pl.DataFrame:
    """Neurons per (language, type, layer), with explicit zeros for every layer."""
    grid = (
        top_neurons.select("language", "type")
        .unique()
        .join(pl.DataFrame({"layer": list(range(n_layers))}, schema={"layer": pl.Int32}), how="cross")
    )
    counts = top_neurons.group_by("language", "type", "layer").len("neurons")
    return (
        grid.join(counts, on=["language", "type", "layer"], how="left")
        .with_columns(pl.col("neurons").fill_null(0))
        .sort("language", "type", "layer")
    )


def layer_distribution_chart(top_neurons: pl.DataFrame, n_layers: int, title: str) -> alt.FacetChart:
    """Bars: how many of the top-N Type-1 and Type-2 neurons sit in each layer, per language."""
    counts = layer_counts(top_neurons, n_layers)
    return (
        alt.Chart(counts)
        .mark_bar()
        .encode(
            x=alt.X("layer:O", title="layer"),
            y=alt.Y("neurons:Q", title="top-N neurons"),
            color=alt.Color("type:N", scale=TYPE_COLOURS, title="neuron type"),
            tooltip=["language:N", "type:N", "layer:O", "neurons:Q"],
        )
        .properties(width=320, height=140)
        .facet(row=alt.Row("language:N", title=None))
        .properties(title=title)
    )


def per_layer_profile(scores: pl.DataFrame, top_k: int = PER_LAYER_TOP_K) -> pl.DataFrame:
    """Mean score of each layer's ``top_k`` highest-scoring neurons, per language and type."""
    return (
        scores.sort("score", descending=True)
        .group_by("language", "type", "layer")
        .agg(pl.col("score").head(top_k).mean().alias("top_score"), pl.col("candidate").first())
        .sort("language", "type", "layer")
    )


def score_profile_chart(scores: pl.DataFrame, title: str) -> alt.FacetChart:
    """Lines over layers of the mean top-k score, one line per language, one panel per type."""
    profile = per_layer_profile(scores)
    return (
        alt.Chart(profile)
        .mark_line(point=True)
        .encode(
            x=alt.X("layer:Q", title="layer"),
            y=alt.Y("top_score:Q", title=f"mean score of the layer's top {PER_LAYER_TOP_K}"),
            color=alt.Color("language:N"),
            strokeDash=alt.StrokeDash(
                "candidate:N",
                scale=alt.Scale(domain=[True, False], range=[[1, 0], [4, 3]]),
                title="candidate layer",
            ),
            tooltip=["language:N", "type:N", "layer:Q", "top_score:Q"],
        )
        .properties(width=320, height=180)
        .facet(column=alt.Column("type:N", title=None))
        .resolve_scale(y="independent")
        .properties(title=title)
    )

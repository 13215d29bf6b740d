"""Attention: how the last token's attention per layer and head shifts under deactivation."""

from __future__ import annotations

from typing import TYPE_CHECKING

from transfer_neurons.lazy import lazy_import
from transfer_neurons.names import NORMAL, NeuronType
from transfer_neurons.reporting.claims import contrast_finding
from transfer_neurons.reporting.numbers import rounded
from transfer_neurons.reporting.registry import (
    CLAIMS,
    CONTRASTS,
    FIGURES,
    MODEL_SCOPE,
    RESULTS,
    TABLES,
    Claim,
    ClaimSettings,
    Contrast,
    Figure,
    FigureContext,
    ResultFile,
    Results,
    SummaryTable,
)
from transfer_neurons.reporting.summaries import paired_contrasts, seed_averaged

if TYPE_CHECKING:
    import altair as alt
    import polars as pl
else:
    alt = lazy_import("altair")
    pl = lazy_import("polars")

RESULTS.register(ResultFile("attention", "evaluate_attention", "shifts"))
RESULTS.register(ResultFile("attention_sentences", "evaluate_attention", "sentences"))
RESULTS.register(ResultFile("attention_example", "evaluate_attention", "example"))

CONTRAST_LABEL = "attention JS"


def attention_summary(shifts: pl.DataFrame) -> pl.DataFrame:
    """Per condition: mean and max JS divergence from the normal attention, and the layer of the max."""
    frame = shifts.filter(pl.col("condition") != NORMAL)
    by_layer = frame.group_by("condition", "layer").agg(pl.col("js_divergence").mean())
    peak = (
        by_layer.sort("js_divergence", "layer", descending=[True, False])
        .group_by("condition", maintain_order=True)
        .first()
        .rename({"layer": "max_layer"})
    )
    overall = frame.group_by("condition").agg(
        pl.col("js_divergence").mean().alias("mean_js"), pl.col("js_divergence").max().alias("max_js")
    )
    return overall.join(peak.select("condition", "max_layer"), on="condition").sort("condition")


def attention_contrasts(sentences: pl.DataFrame, main_label: str, resamples: int) -> pl.DataFrame:
    """JS divergence of the last token's attention from normal (mean over layers and heads) under
    transfer neurons minus each baseline's, paired by sentence."""
    per_sentence = seed_averaged(sentences, main_label, ["model", "language"], "sentence", ["js_divergence"])
    return paired_contrasts(per_sentence, ["model", "language"], "sentence", "js_divergence", resamples)


def first_language_example(results: Results, context: FigureContext) -> pl.DataFrame:
    example = results["attention_example"]
    return example.filter(pl.col("language") == example["language"][0])


def attention_shift_chart(shifts: pl.DataFrame, title: str) -> alt.FacetChart:
    """Layer x head heatmap of the JS divergence of the last token's attention from normal."""
    frame = shifts.filter(pl.col("condition") != NORMAL)
    return (
        alt.Chart(frame)
        .mark_rect()
        .encode(
            x=alt.X("head:O"),
            y=alt.Y("layer:O", sort="descending"),
            color=alt.Color("js_divergence:Q", scale=alt.Scale(scheme="magma", reverse=True), title="JS divergence"),
            tooltip=["condition:N", "layer:O", "head:O", alt.Tooltip("js_divergence:Q", format=".4f")],
        )
        .properties(width=90, height=160)
        .facet(row=alt.Row("language:N", title=None), column=alt.Column("condition:N", title=None))
        .properties(title=title)
    )


def attention_example_chart(example: pl.DataFrame, title: str) -> alt.FacetChart:
    """Head-averaged attention of the last token over the tokens of one sentence, per layer."""
    return (
        alt.Chart(example)
        .mark_rect()
        .encode(
            x=alt.X("token:N", sort=None, title=None),
            y=alt.Y("layer:O", sort="descending"),
            color=alt.Color("weight:Q", scale=alt.Scale(scheme="blues"), title="attention"),
        )
        .properties(width=220, height=180)
        .facet(column=alt.Column("condition:N", title=None))
        .properties(title=title)
    )


TABLES.register(
    SummaryTable("attention_summary", ("attention",), lambda results, settings: attention_summary(results["attention"]))
)
CONTRASTS.register(
    Contrast(
        "attention",
        ("attention_sentences",),
        lambda results, settings: attention_contrasts(
            results["attention_sentences"], settings.main_label, settings.resamples
        ).with_columns(pl.lit(CONTRAST_LABEL).alias("analysis")),
    )
)
FIGURES.register(
    Figure(
        "attention_shift",
        MODEL_SCOPE,
        attention_shift_chart,
        "Beyond the paper: how the last token's attention changes when neurons are deactivated.",
        inputs=("attention",),
        prepare=lambda results, context: results["attention"],
        numbers=lambda tables, context: rounded(tables["attention_summary"], 4),
    )
)
FIGURES.register(
    Figure(
        "attention_example",
        MODEL_SCOPE,
        attention_example_chart,
        "Head-averaged attention of the last token over the first test sentence's tokens.",
        inputs=("attention_example",),
        prepare=first_language_example,
        title=lambda results, context: (
            f"{context.model}: attention example ({results['attention_example']['language'][0]}, first test sentence)"
        ),
    )
)
CLAIMS.register(
    Claim(
        "attention",
        "Deactivating Type-1 neurons shifts the last token's attention beyond controls",
        "paper",
        lambda tables, context: contrast_finding(tables, pl.col("analysis") == CONTRAST_LABEL, NeuronType.TYPE1.value),
        settings=ClaimSettings(
            effect="Type-1 minus control: JS divergence (nats) of the last token's attention from normal",
            side=+1,
            smallest_effect=0.01,
            unit="sentences",
            controls="magnitude-matched, random sets (the strictest present decides)",
            why="a hundredth of a nat (the divergence is at most ln 2 = 0.69)",
            size_option="evaluation.attention.sentences",
        ),
    )
)

"""lm-evaluation-harness tasks under each condition (the built-in multiple-choice task by default)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from transfer_neurons.lazy import lazy_import
from transfer_neurons.names import GROUP_ORDER
from transfer_neurons.reporting.charts import group_colour
from transfer_neurons.reporting.numbers import by_group, rounded
from transfer_neurons.reporting.registry import (
    FIGURES,
    MODEL_SCOPE,
    RESULTS,
    TABLES,
    Figure,
    FigureContext,
    ResultFile,
    SummaryTable,
    Tables,
)
from transfer_neurons.reporting.summaries import group_order, with_group

if TYPE_CHECKING:
    import altair as alt
    import polars as pl
else:
    alt = lazy_import("altair")
    pl = lazy_import("polars")

RESULTS.register(ResultFile("harness", "evaluate_harness", "tables"))


def harness_summary(results: pl.DataFrame) -> pl.DataFrame:
    """Per language, task, metric and condition group: the score (mean over a baseline's seeds, with
    their min and max) and the harness's stderr (mean over seeds)."""
    grouped = with_group(results)
    return (
        grouped.group_by("model", "language", "task", "metric", "filter", "group")
        .agg(
            pl.col("value").mean(),
            pl.col("value").min().alias("seed_min"),
            pl.col("value").max().alias("seed_max"),
            pl.col("stderr").mean(),
            pl.col("seed").n_unique().alias("n_seeds"),
            pl.col("n_samples").first(),
        )
        .sort("model", "language", "task", "metric", "filter", group_order())
    )


def harness_chart(summary: pl.DataFrame, title: str) -> alt.FacetChart:
    """Harness score per condition group with the stderr (bars) and the seeds' range (ticks)."""
    frame = summary.with_columns(
        (pl.col("value") - pl.col("stderr").fill_null(0)).alias("low"),
        (pl.col("value") + pl.col("stderr").fill_null(0)).alias("high"),
        (pl.col("task") + " · " + pl.col("metric")).alias("measure"),
    )
    base = alt.Chart(frame).encode(x=alt.X("group:N", sort=GROUP_ORDER, title=None))
    bars = base.mark_bar().encode(
        y=alt.Y("value:Q", title="score"),
        color=group_colour(),
        tooltip=["language:N", "task:N", "metric:N", "group:N", alt.Tooltip("value:Q", format=".3f"),
                 alt.Tooltip("stderr:Q", format=".3f"), alt.Tooltip("seed_min:Q", format=".3f"),
                 alt.Tooltip("seed_max:Q", format=".3f"), "n_samples:Q"],
    )  # fmt: skip
    errors = base.mark_errorbar().encode(y="low:Q", y2="high:Q")
    spread = base.mark_tick(color="black").encode(y="seed_min:Q") + base.mark_tick(color="black").encode(y="seed_max:Q")
    return (
        alt.layer(bars, errors, spread, data=frame)
        .properties(width=220, height=150)
        .facet(row=alt.Row("measure:N", title=None), column=alt.Column("language:N", title="neurons of"))
        .properties(title=title)
    )


def harness_numbers(tables: Tables, context: FigureContext) -> pl.DataFrame:
    summary = tables["harness_summary"].filter(pl.col("metric") == "acc")
    return rounded(by_group(summary, ["language", "task"], "value", GROUP_ORDER))


TABLES.register(
    SummaryTable(
        "harness_summary",
        ("harness",),
        lambda results, settings: harness_summary(results["harness"]),
        requires="lm_eval",
    )
)
FIGURES.register(
    Figure(
        "harness_scores",
        MODEL_SCOPE,
        harness_chart,
        "lm-evaluation-harness tasks under each condition (bars: score with the harness's stderr; "
        "ticks: the range over random seeds), per language whose neurons are scaled. The paper reports "
        "that deactivating Type-1 neurons during the prompt lowers MMLU-ProX accuracy in the L2 while as "
        "many random neurons do not.",
        table="harness_summary",
        numbers=harness_numbers,
        requires="lm_eval",
    )
)

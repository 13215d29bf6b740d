"""The built-in multiple-choice task: accuracy of each language's and English's task under every condition."""

from __future__ import annotations

from typing import TYPE_CHECKING

from transfer_neurons.evaluation.statistics import bootstrap_mean_ci
from transfer_neurons.lazy import lazy_import
from transfer_neurons.names import GROUP_ORDER
from transfer_neurons.reporting.charts import group_colour
from transfer_neurons.reporting.numbers import by_group, with_interval
from transfer_neurons.reporting.registry import (
    CONTRASTS,
    FIGURES,
    MODEL_SCOPE,
    RESULTS,
    TABLES,
    Contrast,
    Figure,
    FigureContext,
    ResultFile,
    SummaryTable,
    Tables,
)
from transfer_neurons.reporting.summaries import group_order, paired_contrasts, seed_averaged

if TYPE_CHECKING:
    import altair as alt
    import polars as pl
else:
    alt = lazy_import("altair")
    pl = lazy_import("polars")

RESULTS.register(ResultFile("choices", "evaluate_choices", "scores"))

CHOICE_KEYS = ["model", "language", "task_language"]
CONTRAST_LABEL = "multiple choice (own task)"


def choice_summary(scores: pl.DataFrame, main_label: str, resamples: int) -> pl.DataFrame:
    """Per language whose neurons are edited, task language and condition group: accuracy (seeds of a
    baseline averaged per item) with a bootstrap 95 % CI over items, and the per-character accuracy."""
    per_item = seed_averaged(scores, main_label, CHOICE_KEYS, "item", ["acc", "acc_norm"])
    rows = []
    for keys, part in per_item.group_by(*CHOICE_KEYS, "group", maintain_order=True):
        mean, low, high = bootstrap_mean_ci(part.sort("item")["acc"].to_numpy(), resamples)
        rows.append({**dict(zip([*CHOICE_KEYS, "group"], keys, strict=True)), "acc": mean, "ci_low": low,
                     "ci_high": high, "acc_norm": part["acc_norm"].mean(), "n_items": part.height})  # fmt: skip
    return pl.DataFrame(rows).sort(*CHOICE_KEYS, group_order())


def choice_contrasts(scores: pl.DataFrame, main_label: str, resamples: int) -> pl.DataFrame:
    """Accuracy on the language's own task under transfer neurons minus under each baseline, paired by item."""
    per_item = seed_averaged(scores, main_label, CHOICE_KEYS, "item", ["acc"])
    contrasts = paired_contrasts(per_item, CHOICE_KEYS, "item", "acc", resamples)
    return contrasts.filter(pl.col("task_language") == pl.col("language"))


def choice_chart(summary: pl.DataFrame, title: str) -> alt.FacetChart:
    """Accuracy per condition group with its 95 % CI, per language (rows) and task language (columns)."""
    base = alt.Chart(summary).encode(x=alt.X("group:N", sort=GROUP_ORDER, title=None))
    bars = base.mark_bar().encode(
        y=alt.Y("acc:Q", title="accuracy (95 % CI over questions)", scale=alt.Scale(domain=[0, 1])),
        color=group_colour(),
        tooltip=["language:N", "task_language:N", "group:N", alt.Tooltip("acc:Q", format=".3f"),
                 alt.Tooltip("ci_low:Q", format=".3f"), alt.Tooltip("ci_high:Q", format=".3f"),
                 alt.Tooltip("acc_norm:Q", format=".3f"), "n_items:Q"],
    )  # fmt: skip
    errors = base.mark_errorbar().encode(y="ci_low:Q", y2="ci_high:Q")
    return (
        alt.layer(bars, errors, data=summary)
        .properties(width=220, height=140)
        .facet(row=alt.Row("language:N", title="neurons of"), column=alt.Column("task_language:N", title="task in"))
        .properties(title=title)
    )


def choice_numbers(tables: Tables, context: FigureContext) -> pl.DataFrame:
    summary = tables["choice_summary"].with_columns(with_interval("acc", "ci_low", "ci_high"))
    return by_group(summary, ["language", "task_language"], "acc")


TABLES.register(
    SummaryTable(
        "choice_summary",
        ("choices",),
        lambda results, settings: choice_summary(results["choices"], settings.main_label, settings.resamples),
        requires="choices",
    )
)
CONTRASTS.register(
    Contrast(
        "choices",
        ("choices",),
        lambda results, settings: choice_contrasts(
            results["choices"], settings.main_label, settings.resamples
        ).with_columns(pl.lit(CONTRAST_LABEL).alias("analysis")),
    )
)
FIGURES.register(
    Figure(
        "choice_accuracy",
        MODEL_SCOPE,
        choice_chart,
        "The built-in multiple-choice task (each built-in QA question with its gold answer and three wrong "
        "ones of the same type; chance 0.25), scored by the log-likelihood of each choice as "
        "lm-evaluation-harness scores it, in the language whose neurons are deactivated and in English. The "
        "paper reports that deactivating Type-1 neurons during the prompt lowers reasoning accuracy "
        "(MMLU-ProX) in the L2 while as many random neurons do not.",
        table="choice_summary",
        numbers=choice_numbers,
        requires="choices",
    )
)

"""Dose-response: alignment and QA as the number of deactivated neurons grows (the N sweep)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from transfer_neurons.lazy import lazy_import
from transfer_neurons.names import KNN_PREFIX, ConditionKind
from transfer_neurons.reporting.numbers import rounded
from transfer_neurons.reporting.registry import FIGURES, MODEL_SCOPE, TABLES, Figure, SummaryTable

if TYPE_CHECKING:
    import altair as alt
    import polars as pl
else:
    alt = lazy_import("altair")
    pl = lazy_import("polars")

DOSE_KINDS = [ConditionKind.TRANSFER.value, ConditionKind.RANDOM.value]  # the kinds the N sweep runs
QA_PREFIX = "mkqa_f1_"


def dose_response(metrics: pl.DataFrame, answers: pl.DataFrame | None, knn_metric: str) -> pl.DataFrame:
    """Per language, type, N and kind (transfer/random): layer-mean k-NN alignment and mean MKQA F1
    in each QA position mode (``mkqa_f1_{positions}``)."""
    keys = ["model", "language", "neuron_type", "top_n", "kind"]
    swept = metrics.filter(pl.col("kind").is_in(DOSE_KINDS) & (pl.col("metric") == knn_metric))
    knn = swept.group_by(*keys).agg(pl.col("value").mean().alias(knn_metric))
    if answers is None:
        return knn.sort("model", "language", "neuron_type", "kind", "top_n")
    qa = (
        answers.filter(pl.col("kind").is_in(DOSE_KINDS))
        .group_by(*keys, "positions")
        .agg(pl.col("f1").mean())
        .pivot(on="positions", index=keys, values="f1", sort_columns=True)
    )
    qa = qa.rename({column: f"{QA_PREFIX}{column}" for column in qa.columns if column not in keys})
    return knn.join(qa, on=keys, how="left").sort("model", "language", "neuron_type", "kind", "top_n")


def dose_response_chart(table: pl.DataFrame, title: str) -> alt.VConcatChart:
    """Layer-mean k-NN alignment and QA F1 as N grows, transfer vs random neurons."""
    knn_metric = next(column for column in table.columns if column.startswith(KNN_PREFIX))
    qa_columns = [column for column in table.columns if column.startswith(QA_PREFIX)]
    measures = [(knn_metric, "mutual k-NN (layer mean)")]
    measures += [(column, f"MKQA F1 ({column.removeprefix(QA_PREFIX)})") for column in qa_columns]
    panels = []
    for measure, label in measures:
        panels.append(
            alt.Chart(table)
            .mark_line(point=True)
            .encode(
                x=alt.X("top_n:Q", scale=alt.Scale(type="log"), title="neurons deactivated (N)"),
                y=alt.Y(f"{measure}:Q", title=label),
                color=alt.Color("language:N"),
                strokeDash=alt.StrokeDash("kind:N", title="neurons"),
            )
            .properties(width=240, height=150)
            .facet(column=alt.Column("neuron_type:N", title=None))
        )
    return alt.vconcat(*panels).properties(title=title)


TABLES.register(
    SummaryTable(
        "dose_summary",
        ("states", "qa"),
        lambda results, settings: dose_response(results["states"], results.get("qa"), settings.knn_metric),
    )
)
FIGURES.register(
    Figure(
        "dose_response",
        MODEL_SCOPE,
        dose_response_chart,
        "Beyond the paper: alignment and QA as the number of deactivated neurons grows.",
        table="dose_summary",
        numbers=lambda tables, context: rounded(tables["dose_summary"].drop("model")),
    )
)

"""Baseline contrasts: every analysis's transfer-minus-baseline difference in one table and one figure.

Imported after every analysis that registers a contrast: the table reads the results of all of them.
Each row also says how many seeds its baseline was averaged over (``n_seeds``, from the result).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from transfer_neurons.lazy import lazy_import
from transfer_neurons.names import NeuronType
from transfer_neurons.reporting.charts import type_scale
from transfer_neurons.reporting.claims import SEED_KEYS, baseline_seeds
from transfer_neurons.reporting.numbers import with_interval
from transfer_neurons.reporting.registry import (
    CONTRASTS,
    FIGURES,
    MODEL_SCOPE,
    TABLES,
    Figure,
    FigureContext,
    FigureSettings,
    Results,
    SummaryTable,
    Tables,
)
from transfer_neurons.reporting.summaries import CONTRAST_COLUMNS

if TYPE_CHECKING:
    import altair as alt
    import polars as pl
else:
    alt = lazy_import("altair")
    pl = lazy_import("polars")


def baseline_contrasts(results: Results, settings: FigureSettings) -> pl.DataFrame:
    """The rows of every registered contrast whose results are there, in a fixed order, with ``n_seeds``."""
    parts = []
    for contrast in CONTRASTS.values():
        if not all(name in results for name in contrast.inputs):
            continue
        part = contrast.build(results, settings)
        if part.height:
            seeds = baseline_seeds(results[contrast.inputs[0]], settings.main_label)
            parts.append(part.select(CONTRAST_COLUMNS).join(seeds, on=SEED_KEYS, how="left"))
    return pl.concat(parts).sort("model", "language", "analysis", "neuron_type", "baseline")


def baseline_contrasts_chart(contrasts: pl.DataFrame, title: str) -> alt.FacetChart:
    """Transfer neurons minus each baseline, with 95 % CI, per analysis and language (0: no difference)."""
    base = alt.Chart(contrasts).encode(
        y=alt.Y("baseline:N", title=None),
        yOffset=alt.YOffset("neuron_type:N"),
        color=alt.Color("neuron_type:N", scale=type_scale()),
    )
    points = base.mark_point(filled=True).encode(
        x=alt.X("difference:Q", title="transfer minus baseline"),
        tooltip=["analysis:N", "language:N", "neuron_type:N", "baseline:N", alt.Tooltip("difference:Q", format=".4f"),
                 alt.Tooltip("ci_low:Q", format=".4f"), alt.Tooltip("ci_high:Q", format=".4f")],
    )  # fmt: skip
    errors = base.mark_errorbar().encode(x="ci_low:Q", x2="ci_high:Q")
    zero = alt.Chart().mark_rule(color="#888888").encode(x=alt.datum(0))
    return (
        alt.layer(errors, points, zero, data=contrasts)
        .properties(width=170, height=90)
        .facet(row=alt.Row("analysis:N", title=None), column=alt.Column("language:N", title=None))
        .resolve_scale(x="independent")
        .properties(title=title)
    )


def contrast_numbers(tables: Tables, context: FigureContext) -> pl.DataFrame:
    contrasts = tables["baseline_contrasts"].filter(pl.col("neuron_type") == NeuronType.TYPE1.value)
    contrasts = contrasts.with_columns(with_interval("difference", "ci_low", "ci_high", 4))
    wide = contrasts.pivot(on="baseline", index=["language", "analysis"], values="difference", sort_columns=True)
    return wide.sort("language", "analysis")


TABLES.register(
    SummaryTable(
        "baseline_contrasts",
        tuple(dict.fromkeys(name for contrast in CONTRASTS.values() for name in contrast.inputs)),
        baseline_contrasts,
    )
)
FIGURES.register(
    Figure(
        "baseline_contrasts",
        MODEL_SCOPE,
        baseline_contrasts_chart,
        "Transfer neurons against each baseline, analysis by analysis: the mean difference, paired by "
        "sentence or question, with its bootstrap 95 % CI. Random sets match the count and the layers; "
        "magnitude-matched sets also match how much each neuron writes, which the centroid score favours. "
        "A CI that excludes 0 is an effect the baseline cannot explain.",
        table="baseline_contrasts",
        numbers=contrast_numbers,
    )
)

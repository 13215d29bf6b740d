"""The amplification sweep: QA, multiple choice and alignment as the transfer neurons are scaled by a factor."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from transfer_neurons.evaluation.statistics import bootstrap_mean_ci
from transfer_neurons.lazy import lazy_import
from transfer_neurons.names import NORMAL, ConditionKind, NeuronType, condition_group
from transfer_neurons.reporting.charts import group_colour
from transfer_neurons.reporting.claims import Case, Finding
from transfer_neurons.reporting.numbers import rounded
from transfer_neurons.reporting.registry import (
    CLAIMS,
    FIGURES,
    MODEL_SCOPE,
    RESULTS,
    TABLES,
    Claim,
    ClaimSettings,
    Figure,
    FigureContext,
    ResultFile,
    SummaryTable,
    Tables,
)
from transfer_neurons.reporting.summaries import seed_averaged

if TYPE_CHECKING:
    import altair as alt
    import polars as pl
else:
    alt = lazy_import("altair")
    pl = lazy_import("polars")

RESULTS.register(ResultFile("amplification", "evaluate_amplification", "values"))

KEYS = ["model", "language", "measure"]
MEASURE_TITLES = {
    "qa_f1": "MKQA F1 (mean over questions)",
    "choice_accuracy": "multiple-choice accuracy",
    "knn_share": "mutual k-NN alignment (layer mean)",
}
CLAIM_FACTOR = 2.0  # the amplification the claim is judged at (the activations doubled)


def per_unit(values: pl.DataFrame, main_label: str) -> pl.DataFrame:
    """Per language, measure, condition group, factor and unit: the value (a control's seeds averaged)."""
    return seed_averaged(values, main_label, [*KEYS, "factor"], "unit", ["value"])


def amplification_summary(values: pl.DataFrame, main_label: str, resamples: int) -> pl.DataFrame:
    """Per language, measure, group and factor: the mean with a bootstrap 95 % CI over units (questions,
    items or test pairs), and how many."""
    rows = []
    table = per_unit(values, main_label)
    for keys, part in table.group_by(*KEYS, "group", "factor", maintain_order=True):
        mean, low, high = bootstrap_mean_ci(part.sort("unit")["value"].to_numpy(), resamples)
        rows.append({**dict(zip([*KEYS, "group", "factor"], keys, strict=True)), "mean": mean, "ci_low": low,
                     "ci_high": high, "n": part.height})  # fmt: skip
    return pl.DataFrame(rows).sort(*KEYS, "group", "factor")


def amplification_contrasts(values: pl.DataFrame, main_label: str, resamples: int) -> pl.DataFrame:
    """Per language, measure, neuron type and factor: the transfer neurons minus their magnitude-matched
    control, paired by unit, with a bootstrap 95 % CI."""
    table = per_unit(values, main_label).filter(pl.col("factor") != 1.0)
    rows = []
    for neuron_type in NeuronType:
        transfer, control = neuron_type.value, condition_group(ConditionKind.MAGNITUDE_MATCHED, neuron_type)
        paired = table.filter(pl.col("group") == transfer).join(
            table.filter(pl.col("group") == control), on=[*KEYS, "factor", "unit"], suffix="_control"
        )
        for keys, part in paired.group_by(*KEYS, "factor", maintain_order=True):
            part = part.sort("unit")
            mean, low, high = bootstrap_mean_ci((part["value"] - part["value_control"]).to_numpy(), resamples)
            rows.append({**dict(zip([*KEYS, "factor"], keys, strict=True)), "neuron_type": transfer,
                         "transfer": part["value"].mean(), "control": part["value_control"].mean(),
                         "difference": mean, "ci_low": low, "ci_high": high, "n": part.height})  # fmt: skip
    columns = [*KEYS, "factor", "neuron_type", "transfer", "control", "difference", "ci_low", "ci_high", "n"]
    return pl.DataFrame(rows, schema=columns if not rows else None).sort(*KEYS, "neuron_type", "factor")


def sweep_chart(measure: str) -> Callable[[pl.DataFrame, str], alt.FacetChart]:
    """The chart of one measure: its mean against the factor, a line per neuron set, with the CI as a band."""

    def chart(summary: pl.DataFrame, title: str) -> alt.FacetChart:
        frame = summary.filter((pl.col("measure") == measure) & (pl.col("group") != NORMAL))
        base = alt.Chart(frame).encode(x=alt.X("factor:Q", title="activations scaled by"), color=group_colour())
        band = base.mark_area(opacity=0.15).encode(y=alt.Y("ci_low:Q", title=MEASURE_TITLES[measure]), y2="ci_high:Q")
        line = base.mark_line(point=True).encode(
            y="mean:Q",
            tooltip=["language:N", "group:N", "factor:Q", alt.Tooltip("mean:Q", format=".3f"),
                     alt.Tooltip("ci_low:Q", format=".3f"), alt.Tooltip("ci_high:Q", format=".3f"), "n:Q"],
        )  # fmt: skip
        one = alt.Chart().mark_rule(color="#888888", strokeDash=[3, 3]).encode(x=alt.datum(1))
        return (
            alt.layer(band, line, one, data=frame)
            .properties(width=220, height=150)
            .facet(column=alt.Column("language:N", title=None))
            .properties(title=title)
        )

    return chart


def sweep_numbers(measure: str) -> Callable[[Tables, FigureContext], pl.DataFrame]:
    def numbers(tables: Tables, context: FigureContext) -> pl.DataFrame:
        contrasts = tables["amplification_contrasts"].filter(pl.col("measure") == measure)
        return rounded(contrasts.select("language", "neuron_type", "factor", "transfer", "control", "difference",
                                        "ci_low", "ci_high", "n"))  # fmt: skip

    return numbers


def amplified_qa(tables: Tables, context: FigureContext) -> Finding | None:
    """Type-1 neurons doubled raise L2 QA F1 more than their magnitude-matched control doubled."""
    contrasts = tables.get("amplification_contrasts")
    if contrasts is None:
        return None
    rows = contrasts.filter(
        (pl.col("measure") == "qa_f1") & (pl.col("neuron_type") == NeuronType.TYPE1.value)
        & (pl.col("factor") == CLAIM_FACTOR)
    ).sort("language")  # fmt: skip
    cases = tuple(
        Case(f"{row['language']} x{CLAIM_FACTOR:g}", row["difference"], row["ci_low"], row["ci_high"], row["n"])
        for row in rows.iter_rows(named=True)
    )
    return Finding("magnitude-matched sets amplified alike", cases)


TABLES.register(
    SummaryTable(
        "amplification_summary",
        ("amplification",),
        lambda results, settings: amplification_summary(
            results["amplification"], settings.main_label, settings.resamples
        ),  # fmt: skip
        requires="amplification",
    )
)
TABLES.register(
    SummaryTable(
        "amplification_contrasts",
        ("amplification",),
        lambda results, settings: amplification_contrasts(
            results["amplification"], settings.main_label, settings.resamples
        ),  # fmt: skip
        requires="amplification",
    )
)
for _measure, _name, _what in (
    ("qa_f1", "amplification_qa", "MKQA F1 under the paper's QA protocol"),
    ("choice_accuracy", "amplification_choices", "accuracy on the built-in multiple-choice task"),
    ("knn_share", "amplification_alignment", "English-L2 mutual k-NN alignment (last token)"),
):
    FIGURES.register(
        Figure(
            _name,
            MODEL_SCOPE,
            sweep_chart(_measure),
            f"Beyond the paper: {_what} with the activations of the Type-1 and Type-2 neurons and of their "
            "magnitude-matched controls scaled by each factor (dashed: 1, the normal run; 0 removes them). If "
            "the neurons carry a language into the shared space, amplifying Type-1 neurons should help the L2 "
            "more than amplifying as many neurons of the same write size does.",
            table="amplification_summary",
            numbers=sweep_numbers(_measure),
            requires="amplification",
        )
    )
CLAIMS.register(
    Claim(
        "amplification",
        "Amplifying the Type-1 neurons (x2) raises L2 QA beyond amplifying the control",
        "beyond the paper",
        amplified_qa,
        settings=ClaimSettings(
            effect="Type-1 x2 minus the magnitude-matched control x2: MKQA F1 per question",
            side=+1,
            smallest_effect=0.10,
            unit="questions",
            controls="magnitude-matched sets amplified alike",
            why="a tenth of the F1 scale, one question in ten gained",
            size_option="evaluation.amplification.qa_limit",
        ),
    )
)

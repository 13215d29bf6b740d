"""Fine-tuning only chosen neurons (issue 26): each trained set's change from the base model, and the
Type-1 neurons against as many matched neurons trained the same way.

Every value is paired by unit (held-out sentence, question, item or test pair) with the base model's
value of the same unit, and a set with its control by unit too, so that the intervals are those of
paired differences. The claim is judged on the L2 loss: training only the Type-1 neurons should lower
it more than training as many magnitude-matched (or random) neurons does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from transfer_neurons.evaluation.finetune_sets import (
    BASE_SET,
    EVALUATED_SETS,
    LORA_SET,
    LOWER_IS_BETTER,
    MEASURE_UNITS,
    TRAINED_SETS,
)
from transfer_neurons.evaluation.statistics import bootstrap_mean_ci
from transfer_neurons.lazy import lazy_import
from transfer_neurons.names import ConditionKind
from transfer_neurons.reporting.claims import Finding, contrast_cases
from transfer_neurons.reporting.numbers import rounded, with_interval
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

if TYPE_CHECKING:
    import altair as alt
    import polars as pl
else:
    alt = lazy_import("altair")
    pl = lazy_import("polars")

RESULTS.register(ResultFile("finetune", "evaluate_finetuned", "measures"))

KEYS = ["model", "language", "measure"]
# (trained set, its control, the control's kind in the claims' vocabulary): each contrast, paired by unit.
CONTRAST_PAIRS = (
    ("type1", "magnitude_matched_type1", ConditionKind.MAGNITUDE_MATCHED.value),
    ("type1", "random_type1", ConditionKind.RANDOM.value),
    ("type1_type2", "magnitude_matched_type1_type2", ConditionKind.MAGNITUDE_MATCHED.value),
    ("type1", LORA_SET, LORA_SET),
)
CLAIM_SET = "type1"
CLAIM_MEASURE = "l2_loss"
MEASURE_TITLES = {
    "l2_loss": "L2 loss (nats/token)",
    "english_loss": "English loss (nats/token)",
    "qa_f1": "MKQA F1",
    "choice_accuracy": "multiple-choice accuracy",
    "knn_share": "mutual k-NN (base English)",
    "knn_share_own": "mutual k-NN (own English)",
}
SET_COLOURS = {
    "type1": "#1b9e77",
    "type2": "#d95f02",
    "type1_type2": "#7570b3",
    "magnitude_matched_type1": "#7fc9b4",
    "magnitude_matched_type1_type2": "#b8b3dc",
    "random_type1": "#999999",
    "lora": "#e7298a",
}


def summary_schema() -> dict:
    """The columns of ``finetune_summary`` (a function: polars is imported on first use)."""
    return {"model": pl.String, "language": pl.String, "measure": pl.String, "neuron_set": pl.String,
            "unit": pl.String, "trainable_parameters": pl.Int64, "mean": pl.Float64, "ci_low": pl.Float64,
            "ci_high": pl.Float64, "change": pl.Float64, "change_ci_low": pl.Float64, "change_ci_high": pl.Float64,
            "n": pl.Int64, "lower_is_better": pl.Boolean}  # fmt: skip


def contrast_schema() -> dict:
    """The columns of ``finetune_contrasts``."""
    return {"model": pl.String, "language": pl.String, "measure": pl.String, "neuron_set": pl.String,
            "control_set": pl.String, "baseline": pl.String, "set_value": pl.Float64, "control_value": pl.Float64,
            "difference": pl.Float64, "ci_low": pl.Float64, "ci_high": pl.Float64, "n": pl.Int64}  # fmt: skip


def paired_values(measures: pl.DataFrame, first: str, second: str) -> pl.DataFrame:
    """Rows of set ``first`` with set ``second``'s value of the same model, language, measure and unit
    beside (``value``, ``value_other``), in unit order; a unit one of them lacks is left out."""
    other = measures.filter(pl.col("neuron_set") == second).select(
        *KEYS, "unit_id", pl.col("value").alias("value_other")
    )
    joined = measures.filter(pl.col("neuron_set") == first).join(other, on=[*KEYS, "unit_id"], how="inner")
    return joined.sort(*KEYS, "unit_id")


def in_order(table: pl.DataFrame, set_columns: Sequence[str] = ("neuron_set",)) -> pl.DataFrame:
    """Rows by model, language, measure (``MEASURE_UNITS`` order) and set (``EVALUATED_SETS`` order; then by
    each further column of ``set_columns``)."""
    measures, sets = list(MEASURE_UNITS), list(EVALUATED_SETS)
    by_set = [pl.col(column).replace_strict(sets, list(range(len(sets))), default=99) for column in set_columns]
    measure = pl.col("measure").replace_strict(measures, list(range(len(measures))), default=99)
    return table.sort("model", "language", measure, *by_set)


def finetune_summary(measures: pl.DataFrame, resamples: int) -> pl.DataFrame:
    """Per model, language, measure and set: the mean with a bootstrap 95 % CI over units and how many
    (``n``), and the change from the base model: the mean of the per-unit differences (set minus base),
    with its CI; null for the base itself."""
    base = measures.filter(pl.col("neuron_set") == BASE_SET).select(*KEYS, "unit_id", pl.col("value").alias("base"))
    joined = measures.join(base, on=[*KEYS, "unit_id"], how="left").sort(*KEYS, "unit_id")
    rows = []
    for keys, part in joined.group_by(*KEYS, "neuron_set", maintain_order=True):
        row = dict(zip([*KEYS, "neuron_set"], keys, strict=True))
        mean, low, high = bootstrap_mean_ci(part["value"].to_numpy(), resamples)
        paired = part.filter(pl.col("base").is_not_null())
        change: tuple[float | None, ...] = (None, None, None)
        if row["neuron_set"] != BASE_SET and paired.height:
            change = bootstrap_mean_ci((paired["value"] - paired["base"]).to_numpy(), resamples)
        rows.append({**row, "unit": part["unit"][0], "trainable_parameters": int(part["trainable_parameters"][0]),
                     "mean": mean, "ci_low": low, "ci_high": high, "change": change[0], "change_ci_low": change[1],
                     "change_ci_high": change[2], "n": part.height,
                     "lower_is_better": row["measure"] in LOWER_IS_BETTER})  # fmt: skip
    return in_order(pl.DataFrame(rows, schema=summary_schema()))


def finetune_contrasts(measures: pl.DataFrame, resamples: int) -> pl.DataFrame:
    """Per model, language and measure, each pair of ``CONTRAST_PAIRS`` both ran: the trained set minus its
    control, paired by unit, with a bootstrap 95 % CI and how many units. Both start from the same base
    model, so this is also the difference of their changes from the base.

    ``baseline`` names the control's kind as the claims name controls (``magnitude_matched``, ``random``;
    ``lora`` for LoRA)."""
    rows = []
    for neuron_set, control, kind in CONTRAST_PAIRS:
        paired = paired_values(measures, neuron_set, control)
        for keys, part in paired.group_by(*KEYS, maintain_order=True):
            difference = (part["value"] - part["value_other"]).to_numpy()
            mean, low, high = bootstrap_mean_ci(difference, resamples)
            rows.append({**dict(zip(KEYS, keys, strict=True)), "neuron_set": neuron_set, "control_set": control,
                         "baseline": kind, "set_value": part["value"].mean(),
                         "control_value": part["value_other"].mean(),
                         "difference": mean, "ci_low": low, "ci_high": high, "n": part.height})  # fmt: skip
    return in_order(pl.DataFrame(rows, schema=contrast_schema()), ("neuron_set", "control_set"))


def change_chart(summary: pl.DataFrame, title: str) -> alt.FacetChart:
    """Each trained set's change from the base model with its 95 % CI, a panel per measure and language."""
    frame = summary.filter(pl.col("neuron_set") != BASE_SET).with_columns(
        pl.col("measure").replace_strict(MEASURE_TITLES, default=pl.col("measure")).alias("measure_title")
    )
    sets = [name for name in TRAINED_SETS if name in set(frame["neuron_set"].to_list())]
    base = alt.Chart().encode(
        y=alt.Y("neuron_set:N", sort=sets, title=None),
        color=alt.Color("neuron_set:N", scale=alt.Scale(domain=sets, range=[SET_COLOURS[name] for name in sets]),
                        legend=None),
    )  # fmt: skip
    points = base.mark_point(filled=True, size=50).encode(
        x=alt.X("change:Q", title="change from the base model"),
        tooltip=["language:N", "measure:N", "neuron_set:N", "trainable_parameters:Q",
                 alt.Tooltip("change:Q", format=".4f"), alt.Tooltip("change_ci_low:Q", format=".4f"),
                 alt.Tooltip("change_ci_high:Q", format=".4f"), "n:Q"],
    )  # fmt: skip
    errors = base.mark_errorbar().encode(x=alt.X("change_ci_low:Q", title="change from the base model"),
                                         x2="change_ci_high:Q")  # fmt: skip
    zero = alt.Chart().mark_rule(color="#888888").encode(x=alt.datum(0))
    order = [MEASURE_TITLES[measure] for measure in MEASURE_UNITS]
    return (
        alt.layer(errors, points, zero, data=frame)
        .properties(width=200, height=130)
        .facet(row=alt.Row("measure_title:N", sort=order, title=None), column=alt.Column("language:N", title=None))
        .resolve_scale(x="independent")
        .properties(title=title)
    )


def change_numbers(tables: Tables, context: FigureContext) -> pl.DataFrame:
    """Per language and trained set: each measure's change from the base model with its CI."""
    summary = tables["finetune_summary"].filter(pl.col("neuron_set") != BASE_SET)
    summary = rounded(summary).with_columns(with_interval("change", "change_ci_low", "change_ci_high", 3))
    wide = summary.pivot(on="measure", index=["language", "neuron_set", "trainable_parameters"], values="change")
    present = [measure for measure in MEASURE_UNITS if measure in wide.columns]
    sets = list(TRAINED_SETS)
    order = pl.col("neuron_set").replace_strict(sets, list(range(len(sets))), default=99)
    return wide.sort("language", order).select("language", "neuron_set", "trainable_parameters", *present)


def finetuned_language(tables: Tables, context: FigureContext) -> Finding | None:
    """Type-1 minus each control of as many neurons, on the change of the L2 held-out loss, per language;
    the strictest control present (magnitude-matched, else random) decides."""
    contrasts = tables.get("finetune_contrasts")
    if contrasts is None:
        return None
    controls = [ConditionKind.MAGNITUDE_MATCHED.value, ConditionKind.RANDOM.value]
    rows = contrasts.filter(
        (pl.col("measure") == CLAIM_MEASURE) & (pl.col("neuron_set") == CLAIM_SET) & pl.col("baseline").is_in(controls)
    )
    return contrast_cases(rows, ["language"])


TABLES.register(
    SummaryTable(
        "finetune_summary",
        ("finetune",),
        lambda results, settings: finetune_summary(results["finetune"], settings.resamples),
        requires="finetune",
    )
)
TABLES.register(
    SummaryTable(
        "finetune_contrasts",
        ("finetune",),
        lambda results, settings: finetune_contrasts(results["finetune"], settings.resamples),
        requires="finetune",
    )
)
FIGURES.register(
    Figure(
        "finetune_change",
        MODEL_SCOPE,
        change_chart,
        "Beyond the paper: each neuron set trained alone on the language's training text (only its rows of the "
        "MLP input projections and its columns of the down projection move), and LoRA on the MLP with as many "
        "parameters as the Type-1 set; the change of each measure from the untrained model, paired by held-out "
        "sentence, question, item or test pair, with its bootstrap 95 % CI (0: no change). Loss falls as the "
        "model improves; the other measures rise. Controls have as many neurons as the Type-1 set (and the "
        "Type-1 and Type-2 union) and similar write sizes (magnitude-matched) or none (random). If the transfer "
        "neurons are where a language's processing can be changed, training the Type-1 set should lower the L2 "
        "loss more than training its controls.",
        table="finetune_summary",
        numbers=change_numbers,
        requires="finetune",
    )
)
CLAIMS.register(
    Claim(
        "finetune",
        "Training only the Type-1 neurons lowers the L2's held-out loss more than training as many matched neurons",
        "beyond the paper",
        finetuned_language,
        settings=ClaimSettings(
            effect="Type-1 minus control, each trained alone: change of the L2 held-out loss from the base model "
            "(nats/token)",
            side=-1,
            smallest_effect=0.10,
            unit="sentences",
            controls="magnitude-matched, random sets of as many neurons trained alike (the strictest present decides)",
            why="a tenth of a nat per token (perplexity 10 % lower), as the selectivity claim",
            size_option="evaluation.finetune.sentences",
        ),
    )
)

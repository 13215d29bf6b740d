"""The language of the QA answers: do Type-2 neurons decide which language the model answers in?

Each generated answer's language is identified (``evaluation.language_id``: py3langid within a
script, never a guess on text too short to tell) and classed as the question's language, English,
another language, or unidentified (counted apart).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from transfer_neurons.lazy import lazy_import
from transfer_neurons.names import NeuronType
from transfer_neurons.reporting.claims import contrast_finding
from transfer_neurons.reporting.numbers import rounded
from transfer_neurons.reporting.registry import (
    CLAIMS,
    CONTRASTS,
    FIGURES,
    MODEL_SCOPE,
    TABLES,
    Claim,
    ClaimSettings,
    Contrast,
    Figure,
    FigureContext,
    SummaryTable,
    Tables,
)
from transfer_neurons.reporting.summaries import group_order, main_conditions, paired_contrasts, with_group

if TYPE_CHECKING:
    import altair as alt
    import polars as pl
else:
    alt = lazy_import("altair")
    pl = lazy_import("polars")

CLASS_COLOURS = {"question_language": "#1b9e77", "english": "#d95f02", "other": "#7570b3", "unidentified": "#bbbbbb"}
CONTRAST_LABEL = "answers in the question's language"
KEYS = ["model", "language", "positions"]


def answer_language_summary(answers: pl.DataFrame, main_label: str, resamples: int) -> pl.DataFrame:
    """Per language, position mode and condition group: the share of answers of each class (a control's
    seeds pooled), with a bootstrap 95 % CI over questions and n."""
    from transfer_neurons.evaluation.language_id import answer_language_shares

    table = with_group(main_conditions(answers, main_label))
    frames = []
    for (model, seed), part in table.group_by("model", "seed", maintain_order=True):
        shares = answer_language_shares(
            part.select("language", pl.col("group").alias("condition"), "positions", "example_id",
                        "answer_language_class"), resamples)  # fmt: skip
        frames.append(shares.with_columns(pl.lit(model).alias("model"), pl.lit(seed, dtype=pl.Int32).alias("seed")))
    shares = pl.concat(frames).rename({"condition": "group"})
    # A control's seeds: the mean of their shares and of their interval ends.
    pooled = shares.group_by(*KEYS, "group", "answer_language_class").agg(
        pl.col("share").mean(), pl.col("ci_low").mean(), pl.col("ci_high").mean(), pl.col("n").first(),
        pl.col("seed").n_unique().alias("n_seeds"),
    )  # fmt: skip
    order = {name: index for index, name in enumerate(CLASS_COLOURS)}
    return (
        pooled.with_columns(pl.col("answer_language_class").replace_strict(order).alias("class_order"))
        .sort(*KEYS, group_order(), "class_order")
        .drop("class_order")
    )


def in_question_language_contrasts(answers: pl.DataFrame, main_label: str, resamples: int) -> pl.DataFrame:
    """The share of answers in the question's language under the transfer neurons minus under each
    control, paired by question."""
    table = with_group(main_conditions(answers, main_label)).with_columns(
        (pl.col("answer_language_class") == "question_language").cast(pl.Float64).alias("in_language")
    )
    per_question = table.group_by(*KEYS, "group", "example_id").agg(pl.col("in_language").mean())
    return paired_contrasts(per_question, KEYS, "example_id", "in_language", resamples)


def answer_language_chart(summary: pl.DataFrame, title: str) -> alt.FacetChart:
    """Stacked shares of answer languages per condition group, per language and position mode."""
    return (
        alt.Chart(summary)
        .mark_bar()
        .encode(
            x=alt.X("group:N", sort=None, title=None),
            y=alt.Y("share:Q", stack="normalize", title="share of answers"),
            color=alt.Color(
                "answer_language_class:N",
                title="answer in",
                scale=alt.Scale(domain=list(CLASS_COLOURS), range=list(CLASS_COLOURS.values())),
            ),
            order=alt.Order("class_order:Q"),
            tooltip=[
                "language:N",
                "positions:N",
                "group:N",
                "answer_language_class:N",
                alt.Tooltip("share:Q", format=".2f"),
                alt.Tooltip("ci_low:Q", format=".2f"),
                alt.Tooltip("ci_high:Q", format=".2f"),
                "n:Q",
            ],
        )  # fmt: skip
        .transform_calculate(class_order=f"indexof({list(CLASS_COLOURS)}, datum.answer_language_class)")
        .properties(width=220, height=150)
        .facet(column=alt.Column("language:N", title=None), row=alt.Row("positions:N", title="deactivated"))
        .properties(title=title)
    )


def answer_language_numbers(tables: Tables, context: FigureContext) -> pl.DataFrame:
    summary = tables["answer_language_summary"].filter(pl.col("answer_language_class") == "question_language")
    wide = summary.pivot(on="group", index=["language", "positions"], values="share")
    return rounded(wide.sort("language", "positions"))


TABLES.register(
    SummaryTable(
        "answer_language_summary",
        ("qa",),
        lambda results, settings: answer_language_summary(results["qa"], settings.main_label, settings.resamples),
    )
)
CONTRASTS.register(
    Contrast(
        "answer_language",
        ("qa",),
        lambda results, settings: in_question_language_contrasts(
            results["qa"], settings.main_label, settings.resamples
        ).with_columns(pl.format(f"{CONTRAST_LABEL} ({{}})", "positions").alias("analysis")),
    )
)
FIGURES.register(
    Figure(
        "answer_language",
        MODEL_SCOPE,
        answer_language_chart,
        "Beyond the paper: the language each greedy QA answer is written in (identified offline with "
        "py3langid within the answer's script; an answer too short to tell is counted as unidentified, not "
        "guessed). If Type-2 neurons carry the representation back into the output language, deactivating "
        "them should move answers away from the question's language more than their controls do.",
        table="answer_language_summary",
        numbers=answer_language_numbers,
    )
)
CLAIMS.register(
    Claim(
        "output_language",
        "Deactivating Type-2 neurons moves answers away from the question's language beyond controls",
        "beyond the paper",
        lambda tables, context: contrast_finding(
            tables, pl.col("analysis").str.starts_with(CONTRAST_LABEL), NeuronType.TYPE2.value
        ),
        settings=ClaimSettings(
            effect="Type-2 minus control: share of answers written in the question's language (per question)",
            side=-1,
            smallest_effect=0.10,
            unit="questions",
            controls="magnitude-matched, layer-matched, random sets (the strictest present decides)",
            why="one answer in ten moved out of the question's language",
            size_option="evaluation.qa.limit",
        ),
    )
)

"""Loss: how much each condition raises the next-token loss of held-out text in each language."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from transfer_neurons.evaluation.statistics import bootstrap_mean_ci
from transfer_neurons.lazy import lazy_import
from transfer_neurons.names import GROUP_ORDER, NORMAL, NeuronType
from transfer_neurons.reporting.claims import SEED_KEYS, Finding, baseline_seeds, contrast_cases, interval
from transfer_neurons.reporting.numbers import SHOWN_GROUPS, by_group, with_interval
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

RESULTS.register(ResultFile("loss", "evaluate_loss", "losses"))

LOSS_KEYS = ["model", "language", "text_language"]
CONTRAST_LABEL = "loss on own text"


def loss_changes(losses: pl.DataFrame, main_label: str) -> pl.DataFrame:
    """Per condition group and sentence of each text language: the loss and its change from normal."""
    per_sentence = seed_averaged(losses, main_label, LOSS_KEYS, "sentence", ["loss"])
    normal = per_sentence.filter(pl.col("group") == NORMAL).select(*LOSS_KEYS, "sentence", normal_loss="loss")
    return per_sentence.join(normal, on=[*LOSS_KEYS, "sentence"]).with_columns(
        (pl.col("loss") - pl.col("normal_loss")).alias("change")
    )


def loss_summary(losses: pl.DataFrame, main_label: str, resamples: int) -> pl.DataFrame:
    """Per condition language, text language and group: mean loss, and its mean change from normal
    (paired by sentence) with a bootstrap 95 % CI."""
    rows = []
    changes = loss_changes(losses, main_label)
    for keys, part in changes.group_by(*LOSS_KEYS, "group", maintain_order=True):
        change, low, high = bootstrap_mean_ci(part.sort("sentence")["change"].to_numpy(), resamples)
        rows.append({**dict(zip([*LOSS_KEYS, "group"], keys, strict=True)), "loss": part["loss"].mean(),
                     "change": change, "ci_low": low, "ci_high": high, "n_sentences": part.height})  # fmt: skip
    return pl.DataFrame(rows).sort(*LOSS_KEYS, group_order())


def loss_contrasts(losses: pl.DataFrame, main_label: str, resamples: int) -> pl.DataFrame:
    """Loss under transfer neurons minus under each baseline, paired by sentence, on the language's own
    text (the one transfer neurons should hurt most)."""
    per_sentence = seed_averaged(losses, main_label, LOSS_KEYS, "sentence", ["loss"])
    contrasts = paired_contrasts(per_sentence, LOSS_KEYS, "sentence", "loss", resamples)
    return contrasts.filter(pl.col("text_language") == pl.col("language"))


def paired_sides(losses: pl.DataFrame, main_label: str, pivot: str) -> pl.DataFrame:
    """Per language, condition group and sentence: the loss change of the language's own text (``own``)
    and of the same pair's pivot (English) side (``english``)."""
    changes = loss_changes(losses, main_label)
    keys = ["model", "language", "group", "sentence"]
    own = changes.filter(pl.col("text_language") == pl.col("language")).select(*keys, own="change")
    english = changes.filter(pl.col("text_language") == pivot).select(*keys, english="change")
    return own.join(english, on=keys).sort(keys)


def loss_selectivity(losses: pl.DataFrame, main_label: str, resamples: int, pivot: str) -> pl.DataFrame:
    """Per language and condition group: how much more the loss of the language's own text rises than
    the pivot's (English), the two sides of the same pairs paired, with a bootstrap 95 % CI.
    Positive: the damage is selective for the language; near 0: it hurts both alike."""
    paired = paired_sides(losses, main_label, pivot)
    rows = []
    for (model, lang, group), part in paired.group_by("model", "language", "group", maintain_order=True):
        difference, low, high = bootstrap_mean_ci((part["own"] - part["english"]).to_numpy(), resamples)
        rows.append({"model": model, "language": lang, "group": group, "own_change": part["own"].mean(),
                     "english_change": part["english"].mean(), "difference": difference, "ci_low": low,
                     "ci_high": high, "n_pairs": part.height})  # fmt: skip
    return pl.DataFrame(rows, infer_schema_length=None).sort("model", "language", group_order())


def loss_selectivity_contrasts(losses: pl.DataFrame, main_label: str, resamples: int, pivot: str) -> pl.DataFrame:
    """Selectivity (own-text rise minus English rise, per sentence) of transfer neurons minus each
    baseline's, paired by sentence, with its CI and the baseline's seeds: does the transfer set hurt
    the language more selectively than a set of the same size and layers does?"""
    per_sentence = paired_sides(losses, main_label, pivot).with_columns(
        (pl.col("own") - pl.col("english")).alias("selectivity")
    )
    contrasts = paired_contrasts(per_sentence, ["model", "language"], "sentence", "selectivity", resamples)
    if contrasts.height == 0:
        return contrasts
    return contrasts.join(baseline_seeds(losses, main_label), on=SEED_KEYS, how="left")


def loss_change_chart(summary: pl.DataFrame, title: str) -> alt.FacetChart:
    """Change of next-token loss from normal, by text language, per condition group (with 95 % CI)."""
    frame = summary.filter(pl.col("group") != NORMAL)
    base = alt.Chart(frame).encode(
        x=alt.X("group:N", sort=GROUP_ORDER, title=None), xOffset=alt.XOffset("text_language:N")
    )
    bars = base.mark_bar().encode(
        y=alt.Y("change:Q", title="loss change from normal (nats per token)"),
        color=alt.Color("text_language:N", title="text language"),
        tooltip=["language:N", "text_language:N", "group:N", alt.Tooltip("change:Q", format=".3f"),
                 alt.Tooltip("ci_low:Q", format=".3f"), alt.Tooltip("ci_high:Q", format=".3f")],
    )  # fmt: skip
    errors = base.mark_errorbar().encode(y="ci_low:Q", y2="ci_high:Q")
    return (
        alt.layer(bars, errors, data=frame)
        .properties(width=300, height=160)
        .facet(row=alt.Row("language:N", title="neurons of"))
        .properties(title=title)
    )


def loss_numbers(tables: Tables, context: FigureContext) -> pl.DataFrame:
    summary = tables["loss_summary"].filter(pl.col("group") != NORMAL)
    summary = summary.with_columns(with_interval("change", "ci_low", "ci_high"))
    return by_group(
        summary, ["language", "text_language"], "change", [group for group in SHOWN_GROUPS if group != NORMAL]
    )


def selective(tables: Tables, context: FigureContext) -> Finding | None:
    """Type-1 deactivation raises the loss of the language's own text more than of English text, and
    more so than the strictest baseline does (which decides); the English side alone is shown beside."""
    contrasts, selectivity = tables.get("loss_selectivity_contrasts"), tables.get("loss_selectivity")
    if contrasts is None or selectivity is None or contrasts.height == 0:
        return None
    type1 = NeuronType.TYPE1.value
    found = contrast_cases(contrasts.filter(pl.col("neuron_type") == type1), ["language"])
    if found is None:  # no Type-1 contrast (e.g. no Type-1 neurons in the loss conditions): not measured
        return None
    within = {row["language"]: row for row in selectivity.filter(pl.col("group") == type1).iter_rows(named=True)}
    cases = []
    for case in found.cases:
        row = within.get(case.label)
        english = (
            "" if row is None else f"vs its English side {interval(row['difference'], row['ci_low'], row['ci_high'])}"
        )
        cases.append(replace(case, detail=", ".join(part for part in (english, case.detail) if part)))
    return Finding(f"{found.control}' own selectivity", tuple(cases))


TABLES.register(
    SummaryTable(
        "loss_summary",
        ("loss",),
        lambda results, settings: loss_summary(results["loss"], settings.main_label, settings.resamples),
    )
)
TABLES.register(
    SummaryTable(
        "loss_selectivity",
        ("loss",),
        lambda results, settings: loss_selectivity(
            results["loss"], settings.main_label, settings.resamples, settings.pivot
        ),
    )
)
TABLES.register(
    SummaryTable(
        "loss_selectivity_contrasts",
        ("loss",),
        lambda results, settings: loss_selectivity_contrasts(
            results["loss"], settings.main_label, settings.resamples, settings.pivot
        ),
    )
)
CONTRASTS.register(
    Contrast(
        "loss",
        ("loss",),
        lambda results, settings: loss_contrasts(results["loss"], settings.main_label, settings.resamples).with_columns(
            pl.lit(CONTRAST_LABEL).alias("analysis")
        ),
    )
)
FIGURES.register(
    Figure(
        "loss_change",
        MODEL_SCOPE,
        loss_change_chart,
        "Beyond the paper: how much each condition raises the next-token loss of held-out text in each "
        "language, with the neurons scaled at every position. Transfer neurons of a language should hurt "
        "that language more than English; a set that hurts every language alike damages the model.",
        table="loss_summary",
        numbers=loss_numbers,
    )
)
CLAIMS.register(
    Claim(
        "selectivity",
        "The damage is selective: Type-1 deactivation raises the L2's loss more than English's",
        "beyond the paper",
        selective,
        settings=ClaimSettings(
            effect="Type-1 minus control: rise of the L2 text's loss minus the rise of its English side (nats/token)",
            side=+1,
            smallest_effect=0.10,
            unit="sentences",
            controls="magnitude-matched, random sets' own selectivity (the strictest present decides); English side",
            why="a tenth of a nat per token (perplexity 10 % higher)",
            size_option="evaluation.loss.sentences",
        ),
    )
)

"""QA: MKQA F1 of greedy answers in each language under every condition.

Besides the mean over every question, the paper's aggregation (the authors' qa/visualization.py):
the mean F1 over the questions the unmodified model answers well (normal F1 >= 0.8, and >= 0.5),
with Type-1 and the baselines scored on the same questions. The subset is chosen from the normal
condition's per-question F1, per language and position mode, never from a deactivated one. The QA
claim is tested on these subsets.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from transfer_neurons.evaluation.statistics import bootstrap_mean_ci
from transfer_neurons.lazy import lazy_import
from transfer_neurons.names import GROUP_ORDER, NORMAL, NeuronType, condition_group
from transfer_neurons.reporting.charts import GROUP_COLOURS, group_colour, legend_filter
from transfer_neurons.reporting.claims import CONTROL_ORDER, SEED_KEYS, Case, Finding, baseline_seeds, contrast_cases
from transfer_neurons.reporting.numbers import by_group, with_interval
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
    Tables,
)
from transfer_neurons.reporting.summaries import group_order, main_conditions, paired_contrasts, with_group

if TYPE_CHECKING:
    import altair as alt
    import polars as pl
else:
    alt = lazy_import("altair")
    pl = lazy_import("polars")

RESULTS.register(ResultFile("qa", "evaluate_qa", "answers"))

QA_KEYS = ["model", "language", "positions"]
CONTRAST_LABEL = "MKQA F1"  # this analysis's rows of baseline_contrasts: "MKQA F1 (prompt)", ...
# The authors' subsets: the questions the unmodified model answers with F1 at least this high.
PAPER_THRESHOLDS = (0.8, 0.5)
ALL_QUESTIONS = 0.0  # the threshold of the subset of every question
SHAPES = ["square", "triangle-up"]  # the scatter's Type-1 and baseline markers, as in the paper's figure


# --- summaries -------------------------------------------------------------------------------------
def per_question_scores(answers: pl.DataFrame, main_label: str) -> pl.DataFrame:
    """MKQA EM and F1 per question and condition group; seeds of a baseline averaged per question."""
    grouped = with_group(main_conditions(answers, main_label))
    return grouped.group_by(*QA_KEYS, "group", "example_id").agg(
        pl.col("f1").mean(), pl.col("em").mean(), pl.col("seed").n_unique().alias("n_seeds")
    )


def qa_summary(answers: pl.DataFrame, main_label: str, resamples: int) -> pl.DataFrame:
    """Per language, position mode and group: mean MKQA F1 with a bootstrap 95 % CI over questions,
    mean MKQA EM, and the spread of the baseline's seeds."""
    per_question = per_question_scores(answers, main_label)
    seed_spread = (
        with_group(main_conditions(answers, main_label))
        .group_by(*QA_KEYS, "group", "condition")
        .agg(pl.col("f1").mean().alias("seed_f1"))
        .group_by(*QA_KEYS, "group")
        .agg(pl.col("seed_f1").min().alias("seed_min"), pl.col("seed_f1").max().alias("seed_max"))
    )
    rows = []
    for keys, part in per_question.group_by(*QA_KEYS, "group", maintain_order=True):
        mean, low, high = bootstrap_mean_ci(part.sort("example_id")["f1"].to_numpy(), resamples)
        # polars types a Series aggregate as any Python value (here an int): hence the ignore.
        rows.append({**dict(zip([*QA_KEYS, "group"], keys, strict=True)), "mkqa_f1": mean, "ci_low": low,
                     "ci_high": high, "mkqa_em": part["em"].mean(), "n_questions": part.height,
                     "n_seeds": int(part["n_seeds"].max())})  # type: ignore[arg-type]  # fmt: skip
    summary = pl.DataFrame(rows, infer_schema_length=None)
    return summary.join(seed_spread, on=[*QA_KEYS, "group"], how="left").sort(*QA_KEYS, group_order())


def qa_contrasts(answers: pl.DataFrame, main_label: str, resamples: int) -> pl.DataFrame:
    """MKQA F1 of transfer neurons minus each baseline's, paired by question, with its CI."""
    return paired_contrasts(per_question_scores(answers, main_label), QA_KEYS, "example_id", "f1", resamples)


def subset_label(threshold: float) -> str:
    """``all`` for every question, ``f1>=0.8`` for the questions the unmodified model answers that well."""
    return "all" if threshold == ALL_QUESTIONS else f"f1>={threshold:g}"


def in_paper_subsets(per_question: pl.DataFrame, thresholds: Sequence[float] = PAPER_THRESHOLDS) -> pl.DataFrame:
    """``per_question`` (``per_question_scores``) rows of the questions whose normal F1 reaches each
    threshold (and of every question, threshold 0), with ``threshold`` and ``subset`` columns: a
    question appears once per subset it is in, under every condition group."""
    normal = per_question.filter(pl.col("group") == NORMAL).select(*QA_KEYS, "example_id", normal_f1="f1")
    chosen = pl.concat(
        [
            normal.filter(pl.col("normal_f1") >= threshold).with_columns(
                pl.lit(threshold, pl.Float64).alias("threshold"), pl.lit(subset_label(threshold)).alias("subset")
            )
            for threshold in (ALL_QUESTIONS, *thresholds)
        ]
    )
    return per_question.join(chosen.drop("normal_f1"), on=[*QA_KEYS, "example_id"])


def qa_threshold_summary(
    answers: pl.DataFrame, main_label: str, resamples: int, thresholds: Sequence[float] = PAPER_THRESHOLDS
) -> pl.DataFrame:
    """Per language, position mode, subset (``threshold``: every question, or normal F1 >= each of
    ``thresholds``) and condition group: mean MKQA F1 over the subset's questions with a bootstrap
    95 % CI over them, ``n_questions`` and the seeds a baseline is averaged over (per question first).
    A subset no question reaches has no rows."""
    subsets = in_paper_subsets(per_question_scores(answers, main_label), thresholds)
    keys = [*QA_KEYS, "threshold", "subset", "group"]
    rows = []
    for values, part in subsets.group_by(*keys, maintain_order=True):
        mean, low, high = bootstrap_mean_ci(part.sort("example_id")["f1"].to_numpy(), resamples)
        # polars types a Series aggregate as any Python value (here an int): hence the ignore.
        rows.append({**dict(zip(keys, values, strict=True)), "mkqa_f1": mean, "ci_low": low, "ci_high": high,
                     "n_questions": part.height, "n_seeds": int(part["n_seeds"].max())})  # type: ignore[arg-type]  # fmt: skip
    return pl.DataFrame(rows, infer_schema_length=None).sort(*QA_KEYS, "threshold", group_order())


def qa_threshold_contrasts(
    answers: pl.DataFrame, main_label: str, resamples: int, thresholds: Sequence[float] = PAPER_THRESHOLDS
) -> pl.DataFrame:
    """MKQA F1 of transfer neurons minus each baseline's on each subset (``qa_threshold_summary``),
    paired by question, with its CI and the seeds the baseline is averaged over."""
    subsets = in_paper_subsets(per_question_scores(answers, main_label), thresholds)
    contrasts = paired_contrasts(subsets, [*QA_KEYS, "threshold", "subset"], "example_id", "f1", resamples)
    if contrasts.height == 0:
        return contrasts
    seeds = baseline_seeds(answers, main_label)
    return contrasts.join(seeds, on=SEED_KEYS, how="left").sort(*QA_KEYS, "threshold", "neuron_type", "baseline")


def strictest_baseline_group(groups: Iterable[str], neuron_type: str) -> str | None:
    """The group of the strictest baseline of ``neuron_type`` among ``groups`` (magnitude-matched, else
    layer-matched, else random)."""
    present = set(groups)
    return next(
        (condition_group(kind, neuron_type) for kind in CONTROL_ORDER if condition_group(kind, neuron_type) in present),
        None,
    )


# --- chart and numbers -----------------------------------------------------------------------------
def qa_f1_chart(summary: pl.DataFrame, title: str) -> alt.FacetChart:
    """Mean MKQA F1 per condition group with bootstrap 95 % CI, one panel per language and position mode."""
    chosen = legend_filter("group")
    base = alt.Chart(summary).encode(x=alt.X("group:N", sort=GROUP_ORDER, title=None))
    bars = base.mark_bar().add_params(chosen).encode(
        y=alt.Y("mkqa_f1:Q", title="MKQA F1 (mean over questions, 95 % CI)"),
        color=group_colour(),
        opacity=alt.condition(chosen, alt.value(1.0), alt.value(0.2)),
        tooltip=["language:N", "positions:N", "group:N", alt.Tooltip("mkqa_f1:Q", format=".3f"),
                 alt.Tooltip("ci_low:Q", format=".3f"), alt.Tooltip("ci_high:Q", format=".3f"),
                 alt.Tooltip("mkqa_em:Q", format=".3f")],
    )  # fmt: skip
    errors = base.mark_errorbar().encode(y="ci_low:Q", y2="ci_high:Q")
    return (
        alt.layer(bars, errors, data=summary)
        .properties(width=220, height=180)
        .facet(column=alt.Column("language:N", title=None), row=alt.Row("positions:N", title="deactivated"))
        .properties(title=title)
    )


def qa_numbers(tables: Tables, context: FigureContext) -> pl.DataFrame:
    summary = tables["qa_summary"].with_columns(with_interval("mkqa_f1", "ci_low", "ci_high"))
    return by_group(summary, ["language", "positions"], "mkqa_f1")


def qa_scatter_points(results: Results, context: FigureContext) -> pl.DataFrame:
    """Per language, position mode, deactivated group (Type-1 and its strictest baseline) and point:
    the normal F1 (``normal_f1``), the deactivated F1 (``f1``) and how many questions sit there."""
    per_question = per_question_scores(results["qa"], context.settings.main_label)
    type1 = NeuronType.TYPE1.value
    control = strictest_baseline_group(per_question["group"].unique().to_list(), type1)
    normal = per_question.filter(pl.col("group") == NORMAL).select(*QA_KEYS, "example_id", normal_f1="f1")
    deactivated = per_question.filter(pl.col("group").is_in([type1, control]))
    return (
        deactivated.join(normal, on=[*QA_KEYS, "example_id"])
        .group_by("language", "positions", "group", "normal_f1", "f1")
        .agg(pl.len().alias("questions"))
        .sort("language", "positions", "group", "normal_f1", "f1")
    )


def qa_scatter_chart(points: pl.DataFrame, title: str) -> alt.FacetChart:
    """Per question: F1 without intervention (x) against F1 with Type-1 neurons or the strictest baseline
    deactivated (y), one panel per language and position mode, with y = x and the paper's thresholds."""
    base = alt.Chart(points)
    groups = [group for group in GROUP_ORDER if group in set(points["group"].to_list())]
    colours = [GROUP_COLOURS[GROUP_ORDER.index(group)] for group in groups]  # as in every other figure
    dots = base.mark_point(filled=True, opacity=0.6).encode(
        x=alt.X("normal_f1:Q", title="F1 without intervention", scale=alt.Scale(domain=[0, 1])),
        y=alt.Y("f1:Q", title="F1 with neurons deactivated", scale=alt.Scale(domain=[0, 1])),
        color=alt.Color("group:N", scale=alt.Scale(domain=groups, range=colours), title="deactivated"),
        shape=alt.Shape("group:N", scale=alt.Scale(domain=groups, range=SHAPES), title="deactivated"),
        size=alt.Size("questions:Q", title="questions", scale=alt.Scale(range=[30, 400], zero=False)),
        tooltip=["language:N", "positions:N", "group:N", alt.Tooltip("normal_f1:Q", format=".2f"),
                 alt.Tooltip("f1:Q", format=".2f"), "questions:Q"],
    )  # fmt: skip
    diagonal = base.mark_rule(strokeDash=[5, 4], color="#3060c0").encode(
        x=alt.datum(0), y=alt.datum(0), x2=alt.datum(1), y2=alt.datum(1)
    )
    thresholds = [
        base.mark_rule(strokeDash=[2, 3], color="#888888").encode(x=alt.datum(threshold))
        for threshold in PAPER_THRESHOLDS
    ]
    return (
        alt.layer(diagonal, *thresholds, dots, data=points)
        .properties(width=200, height=200)
        .facet(column=alt.Column("language:N", title=None), row=alt.Row("positions:N", title="deactivated"))
        .properties(title=title)
    )


def qa_scatter_title(results: Results, context: FigureContext) -> str:
    answers = main_conditions(results["qa"], context.settings.main_label)
    counts = answers.group_by("language").agg(pl.col("example_id").n_unique()).sort("language")
    listed = ", ".join(f"{language} {n}" for language, n in counts.iter_rows())
    return f"{context.model}: MKQA F1 per question, without and with deactivation (questions: {listed})"


def qa_threshold_numbers(tables: Tables, context: FigureContext) -> pl.DataFrame:
    """Per language, position mode and subset: n questions, and mean F1 [CI] of normal, Type-1 and the
    strictest baseline."""
    summary = tables["qa_threshold_summary"]
    type1 = NeuronType.TYPE1.value
    groups = [NORMAL, type1, strictest_baseline_group(summary["group"].unique().to_list(), type1)]
    sizes = summary.filter(pl.col("group") == NORMAL).select("language", "positions", "subset", "n_questions")
    frame = summary.with_columns(with_interval("mkqa_f1", "ci_low", "ci_high"))
    wide = by_group(frame, ["language", "positions", "subset"], "mkqa_f1", [group for group in groups if group])
    return sizes.join(wide, on=["language", "positions", "subset"]).sort("language", "positions", "subset")


# --- the claim ---------------------------------------------------------------------------------------
def qa_case_label(values: tuple[Any, ...]) -> str:
    language, positions, threshold = values
    return f"{language} {positions} {subset_label(threshold)}"


def qa_finding(tables: Tables, context: FigureContext) -> Finding | None:
    """Type-1 minus the strictest baseline on the paper's subsets, one case per language, position mode
    and threshold; a subset no question reaches is a case with n = 0."""
    contrasts, summary = tables.get("qa_threshold_contrasts"), tables.get("qa_threshold_summary")
    if contrasts is None or summary is None:
        return None
    keys = ["language", "positions", "threshold"]
    rows = contrasts.filter(
        (pl.col("neuron_type") == NeuronType.TYPE1.value) & pl.col("threshold").is_in(list(PAPER_THRESHOLDS))
    )
    found = contrast_cases(rows, keys, qa_case_label)
    measured = {case.label: case for case in (found.cases if found else ())}
    settings = summary.select("language", "positions").unique().sort("language", "positions")
    cases = []
    for language, positions in settings.iter_rows():
        for threshold in PAPER_THRESHOLDS:
            label = qa_case_label((language, positions, threshold))
            reason = f"no question the unmodified model answers with F1 >= {threshold:g}"
            cases.append(measured.get(label, Case(label, None, None, None, 0, undecidable=reason)))
    control = found.control if found else "—"
    return Finding(control, tuple(cases)) if cases else None


# --- registrations -----------------------------------------------------------------------------------
TABLES.register(
    SummaryTable(
        "qa_summary",
        ("qa",),
        lambda results, settings: qa_summary(results["qa"], settings.main_label, settings.resamples),
    )
)
TABLES.register(
    SummaryTable(
        "qa_contrasts",
        ("qa",),
        lambda results, settings: qa_contrasts(results["qa"], settings.main_label, settings.resamples),
    )
)
TABLES.register(
    SummaryTable(
        "qa_threshold_summary",
        ("qa",),
        lambda results, settings: qa_threshold_summary(results["qa"], settings.main_label, settings.resamples),
    )
)
TABLES.register(
    SummaryTable(
        "qa_threshold_contrasts",
        ("qa",),
        lambda results, settings: qa_threshold_contrasts(results["qa"], settings.main_label, settings.resamples),
    )
)
CONTRASTS.register(
    Contrast(
        "qa",
        ("qa",),
        lambda results, settings: qa_contrasts(results["qa"], settings.main_label, settings.resamples).with_columns(
            pl.format(f"{CONTRAST_LABEL} ({{}})", "positions").alias("analysis")
        ),
    )
)
FIGURES.register(
    Figure(
        "qa_f1",
        MODEL_SCOPE,
        qa_f1_chart,
        "MKQA F1 (MKQA's own answer normalisation) of greedy answers in each language, with every "
        "prompt token deactivated (prompt) or only the last one (prompt_last), the paper's two settings. "
        "The paper reports that deactivating the top-1000 Type-1 neurons collapses multilingual QA "
        "while as many random neurons barely change it.",
        table="qa_summary",
        numbers=qa_numbers,
    )
)
FIGURES.register(
    Figure(
        "qa_scatter",
        MODEL_SCOPE,
        qa_scatter_chart,
        "The paper's QA figure: each point is a question (its size: how many questions share it), placed "
        "by its MKQA F1 without intervention (x) and with the Type-1 neurons or the strictest baseline "
        "deactivated (y). On the dashed line y = x a question is unchanged; below it, it lost F1. The "
        "paper scores only the questions right of the dotted lines (normal F1 >= 0.5, >= 0.8) and reports "
        "Type-1 points falling far below the line there while baseline points stay on it. Look at the "
        "right-hand side of each panel: Type-1 points should sit lower than the baseline's. The table "
        "gives each subset's size and mean F1 with its 95 % CI over questions.",
        table="qa_threshold_summary",
        inputs=("qa",),
        prepare=qa_scatter_points,
        numbers=qa_threshold_numbers,
        title=qa_scatter_title,
    )
)
CLAIMS.register(
    Claim(
        "qa",
        "Deactivating Type-1 neurons lowers multilingual QA (MKQA F1) beyond controls",
        "paper",
        qa_finding,
        settings=ClaimSettings(
            effect="Type-1 minus control: MKQA F1 on the questions the unmodified model answers with F1 >= 0.8, 0.5",
            side=-1,
            smallest_effect=0.10,
            unit="questions",
            controls="magnitude-matched, random sets (the strictest present decides)",
            why="a tenth of the F1 scale, one question in ten lost; the paper reports a collapse on these questions",
            size_option="evaluation.qa.limit",
            paper_effect=-0.30,
        ),
    )
)

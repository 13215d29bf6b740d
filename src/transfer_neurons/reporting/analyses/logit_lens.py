"""The logit lens: the probability of the answer's first token, in the question's language and in English,
read at every layer of the last prompt token (``evaluation.logit_lens``), and the scripts of the tokens
the deactivated neurons' write vectors promote.

Only questions whose two answers start with different tokens are summarised (a shared first token,
"Tokyo", cannot tell the languages apart). The *English phase* is the layers at depth 0.5 to 0.9 of
the model (``ENGLISH_PHASE``: (layer + 1) / layers; layers 8-15 of Gemma 3 270M's 18, 15-27 of a 32-layer
model), where Wendler et al. (2024) see Llama-2's English token rise before the L2 token takes over
in the last layers. Per question, the measures (natural logs, so that questions whose probabilities
differ by orders of magnitude weigh alike):

* ``english_lead_middle``: ln(mean P(English token) / mean P(L2 token)) over the English phase;
* ``l2_lead_last``: ln(P(L2 token) / P(English token)) at the last layer;
* ``log_english_middle``: ln(mean P(English token)) over the English phase, whose Type-1 minus control
  difference (paired by question) tests whether Type-1 deactivation weakens the English phase.

Two claims: ``latent_english`` (the normal run's ``english_lead_middle`` > 0, the last layer's lead shown
beside it) and ``latent_english_type1`` (Type-1 minus the strictest control on ``log_english_middle`` < 0).
Their thresholds are their registrations' settings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from transfer_neurons.evaluation.statistics import bootstrap_mean_ci
from transfer_neurons.lazy import lazy_import
from transfer_neurons.names import GROUP_ORDER, NORMAL, NeuronType
from transfer_neurons.reporting.charts import layer_axis
from transfer_neurons.reporting.claims import Case, Finding, contrast_cases, interval
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
    Results,
    SummaryTable,
    Tables,
)
from transfer_neurons.reporting.summaries import group_order, main_conditions, paired_contrasts, with_group

if TYPE_CHECKING:
    import altair as alt
    import polars as pl
    from polars._typing import SchemaDict
else:
    alt = lazy_import("altair")
    pl = lazy_import("polars")

RESULTS.register(ResultFile("logit_lens", "evaluate_logit_lens", "lens"))
RESULTS.register(ResultFile("logit_lens_neurons", "evaluate_logit_lens", "neurons"))

PART = "logit_lens"  # the optional part of the workflow (evaluation.logit_lens.enabled)
ENGLISH_PHASE = (0.5, 0.9)  # depths (layer + 1) / layers of the English phase: from 0.5, below 0.9
QUESTION_LANGUAGE, ENGLISH = "question_language", "english"  # the lens table's targets
TARGET_TITLES = {QUESTION_LANGUAGE: "answer in the question's language", ENGLISH: "answer in English"}
MEASURES = ("english_lead_middle", "l2_lead_last", "log_english_middle", "log_l2_middle")
MEASURE_TITLES = {
    "english_lead_middle": "middle layers: ln P(English) / P(L2)",
    "l2_lead_last": "last layer: ln P(L2) / P(English)",
    "log_english_middle": "middle layers: ln P(English)",
    "log_l2_middle": "middle layers: ln P(L2)",
}
KEYS = ["model", "language"]
FLOOR = 1e-6  # the charts' lowest probability: values below sit on the axis


# --- per question ----------------------------------------------------------------------------------------
def with_phase(lens: pl.DataFrame) -> pl.DataFrame:
    """``lens`` with ``depth`` ((layer + 1) / the model's layers), ``middle`` (in ``ENGLISH_PHASE``) and
    ``last`` (the last layer) columns."""
    layers = lens.group_by("model").agg((pl.col("layer").max() + 1).alias("n_layers"))
    depth = (pl.col("layer") + 1) / pl.col("n_layers")
    return (
        lens.join(layers, on="model")
        .with_columns(depth.alias("depth"))
        .with_columns(
            ((pl.col("depth") >= ENGLISH_PHASE[0]) & (pl.col("depth") < ENGLISH_PHASE[1])).alias("middle"),
            (pl.col("layer") == pl.col("n_layers") - 1).alias("last"),
        )
    )


def question_measures(lens: pl.DataFrame, main_label: str) -> pl.DataFrame:
    """Per model, language, condition group, measure (``MEASURES``) and question with distinct first
    tokens: its value (a control's seeds averaged per question) -> columns model, language, group,
    measure, example_id, value."""
    table = with_phase(with_group(main_conditions(lens, main_label)).filter(~pl.col("same_token")))
    keys = [*KEYS, "group", "condition", "example_id"]

    def mean_probability(target: str, where: str) -> pl.Expr:
        return pl.col("probability").filter((pl.col("target") == target) & pl.col(where)).mean()

    def log_probability(target: str) -> pl.Expr:
        return pl.col("log_probability").filter((pl.col("target") == target) & pl.col("last")).first()

    per_condition = table.group_by(keys).agg(
        mean_probability(ENGLISH, "middle").log().alias("log_english_middle"),
        mean_probability(QUESTION_LANGUAGE, "middle").log().alias("log_l2_middle"),
        (log_probability(QUESTION_LANGUAGE) - log_probability(ENGLISH)).alias("l2_lead_last"),
    )
    per_condition = per_condition.with_columns(
        (pl.col("log_english_middle") - pl.col("log_l2_middle")).alias("english_lead_middle")
    )
    long = per_condition.unpivot(index=keys, on=list(MEASURES), variable_name="measure", value_name="value")
    return long.group_by(*KEYS, "group", "measure", "example_id").agg(pl.col("value").mean())


def question_counts(lens: pl.DataFrame) -> pl.DataFrame:
    """Per model and language: questions asked, answered (normal F1 >= the threshold), and of those with
    different first tokens in the two languages (the ones summarised)."""
    normal = lens.filter(pl.col("condition") == NORMAL)
    return (
        normal.group_by(KEYS)
        .agg(
            pl.col("questions_asked").first().alias("asked"),
            pl.col("example_id").n_unique().alias("answered"),
            pl.col("example_id").filter(~pl.col("same_token")).n_unique().alias("distinct"),
            pl.col("first_generated").filter(pl.col("target") == QUESTION_LANGUAGE).mean().alias("first_generated"),
        )
        .sort(KEYS)
    )


# --- summaries -------------------------------------------------------------------------------------------
def bootstrap_rows(frame: pl.DataFrame, keys: list[str], unit: str, value: str, resamples: int) -> pl.DataFrame:
    """Per ``keys``: the mean of ``value`` with a bootstrap 95 % CI over ``unit`` and n (``keys`` + mean,
    ci_low, ci_high, n)."""
    rows = []
    for key_values, part in frame.sort(*keys, unit).group_by(*keys, maintain_order=True):
        mean, low, high = bootstrap_mean_ci(part[value].to_numpy(), resamples)
        rows.append({**dict(zip(keys, key_values, strict=True)), "mean": mean, "ci_low": low, "ci_high": high,
                     "n": part.height})  # fmt: skip
    schema: SchemaDict = {**{key: frame.schema[key] for key in keys}, "mean": pl.Float64, "ci_low": pl.Float64,
              "ci_high": pl.Float64, "n": pl.Int64}  # fmt: skip
    return pl.DataFrame(rows, schema=schema)


def logit_lens_curves(lens: pl.DataFrame, main_label: str, resamples: int) -> pl.DataFrame:
    """Per model, language, condition group, layer and target: the mean probability of the target answer's
    first token over the questions with distinct first tokens (a control's seeds averaged per question),
    with a bootstrap 95 % CI over questions, n, and whether the layer is in the English phase."""
    table = with_phase(with_group(main_conditions(lens, main_label)).filter(~pl.col("same_token")))
    per_question = table.group_by(*KEYS, "group", "layer", "middle", "target", "example_id").agg(
        pl.col("probability").mean()
    )
    curves = bootstrap_rows(per_question, [*KEYS, "group", "layer", "middle", "target"], "example_id",
                            "probability", resamples)  # fmt: skip
    return curves.sort(*KEYS, group_order(), "layer", "target")


def logit_lens_phases(lens: pl.DataFrame, main_label: str, resamples: int) -> pl.DataFrame:
    """Per model, language, condition group and measure (``MEASURES``): the mean over questions with a
    bootstrap 95 % CI, n, and the language's questions asked, answered and with distinct first tokens. A
    language whose answered questions all share their first tokens has one row, of counts only."""
    measures = question_measures(lens, main_label)
    summary = bootstrap_rows(measures, [*KEYS, "group", "measure"], "example_id", "value", resamples)
    table = question_counts(lens).join(summary, on=KEYS, how="left")
    return table.select(*summary.columns, "asked", "answered", "distinct", "first_generated").sort(
        *KEYS, group_order(), "measure", nulls_last=True
    )


def logit_lens_contrasts(lens: pl.DataFrame, main_label: str, resamples: int) -> pl.DataFrame:
    """Per model, language and measure: each type's transfer neurons minus each control, paired by question,
    with its bootstrap 95 % CI (``summaries.paired_contrasts``' columns, less ``analysis``)."""
    measures = question_measures(lens, main_label).filter(pl.col("measure").is_in(["log_english_middle",
                                                                                   "log_l2_middle"]))  # fmt: skip
    return paired_contrasts(measures, [*KEYS, "measure"], "example_id", "value", resamples)


def logit_lens_scripts(neurons: pl.DataFrame, main_label: str, resamples: int) -> pl.DataFrame:
    """Per model, language, condition group and script language (the L2 and English): the mean over the
    group's neurons (every seed's) of the share of their write vectors' top promoted tokens written in
    that language's script, with a bootstrap 95 % CI over neurons and n."""
    table = with_group(main_conditions(neurons, main_label)).filter(pl.col("share").is_not_null())
    summary = bootstrap_rows(table.with_columns(pl.format("{}/{}/{}", "condition", "layer", "neuron").alias("unit")),
                             [*KEYS, "group", "script_language"], "unit", "share", resamples)  # fmt: skip
    return summary.sort(*KEYS, group_order(), "script_language")


# --- charts and numbers ----------------------------------------------------------------------------------
def curves_chart(curves: pl.DataFrame, title: str) -> alt.FacetChart:
    """Mean probability of each answer's first token across layers (log scale), a line per target with its
    CI as a band, a panel per condition group (columns) and language (rows); the English phase shaded."""
    frame = curves.with_columns(
        pl.col("mean").clip(lower_bound=FLOOR), pl.col("ci_low").clip(lower_bound=FLOOR),
        pl.col("ci_high").clip(lower_bound=FLOOR),
        pl.col("target").replace_strict(TARGET_TITLES).alias("answer"),
    )  # fmt: skip
    # Every layer without data of its own, so that the facets split the one table.
    base = alt.Chart().encode(x=layer_axis(), color=alt.Color("answer:N", title=None))
    scale = alt.Scale(type="log", domain=[FLOOR, 1], clamp=True)
    band = base.mark_area(opacity=0.2).encode(
        y=alt.Y("ci_low:Q", title="probability (mean, 95 % CI)", scale=scale), y2="ci_high:Q"
    )
    line = base.mark_line(point=True).encode(
        y=alt.Y("mean:Q", scale=scale),
        tooltip=["language:N", "group:N", "layer:Q", "answer:N", alt.Tooltip("mean:Q", format=".2e"),
                 alt.Tooltip("ci_low:Q", format=".2e"), alt.Tooltip("ci_high:Q", format=".2e"), "n:Q"],
    )  # fmt: skip
    phase = (
        alt.Chart()
        .transform_filter(alt.datum.middle)
        .mark_rect(color="#e8e8e8")
        .encode(x="min(layer):Q", x2="max(layer):Q")
    )
    return (
        alt.layer(phase, band, line, data=frame)
        .properties(width=160, height=130)
        .facet(row=alt.Row("language:N", title=None), column=alt.Column("group:N", sort=GROUP_ORDER, title=None))
        .properties(title=title)
    )


def curves_title(results: Results, context: FigureContext) -> str:
    counts = question_counts(results["logit_lens"])
    listed = ", ".join(
        f"{row['language']} {row['distinct']} of {row['answered']} answered of {row['asked']}"
        for row in counts.iter_rows(named=True)
    )
    return f"{context.model}: logit lens of the last prompt token (questions with distinct first tokens: {listed})"


def scripts_chart(summary: pl.DataFrame, title: str) -> alt.FacetChart:
    """Mean share of promoted tokens in the L2's and in English's script per condition group and language."""
    frame = summary.with_columns(
        pl.when(pl.col("script_language") == pl.col("language")).then(pl.lit("the language's script"))
        .otherwise(pl.lit("English's script")).alias("script")
    )  # fmt: skip
    base = alt.Chart().encode(x=alt.X("group:N", sort=GROUP_ORDER, title=None), xOffset="script:N")
    axis_title = "share of top promoted tokens (mean over neurons, 95 % CI)"
    bars = base.mark_bar().encode(
        y=alt.Y("mean:Q", title=axis_title),
        color=alt.Color("script:N", title=None),
        tooltip=["language:N", "group:N", "script:N", alt.Tooltip("mean:Q", format=".3f"),
                 alt.Tooltip("ci_low:Q", format=".3f"), alt.Tooltip("ci_high:Q", format=".3f"), "n:Q"],
    )  # fmt: skip
    errors = base.mark_errorbar().encode(y=alt.Y("ci_low:Q", title=axis_title), y2="ci_high:Q")
    return (
        alt.layer(bars, errors, data=frame)
        .properties(width=240, height=160)
        .facet(column=alt.Column("language:N", title=None))
        .properties(title=title)
    )


def phase_numbers(tables: Tables, context: FigureContext) -> pl.DataFrame:
    """Per language: questions asked, answered and with distinct first tokens, and the share of the answered
    ones whose first generated token is the L2 answer's first token (else the lens reads a token the model
    writes later, after "<strong>", say); the normal run's English
    lead in the middle layers and L2 lead at the last layer; Type-1 and Type-2 minus their strictest
    control on ln P(English) in the middle layers (each mean [95 % CI])."""
    phases, contrasts = tables["logit_lens_phases"], tables["logit_lens_contrasts"]
    rows = []
    for (language,), part in phases.sort("language").group_by("language", maintain_order=True):
        first = part.row(0, named=True)
        row = {"language": language, "asked": first["asked"], "answered": first["answered"],
               "distinct": first["distinct"], "first token generated": round(first["first_generated"], 3)}  # fmt: skip
        for measure in ("english_lead_middle", "l2_lead_last"):
            found = part.filter((pl.col("group") == NORMAL) & (pl.col("measure") == measure))
            row[f"normal: {MEASURE_TITLES[measure]}"] = (
                interval(*found.select("mean", "ci_low", "ci_high").row(0)) if found.height else "—"
            )
        for neuron_type in NeuronType:
            contrast = contrast_row(contrasts, language, neuron_type.value)
            row[f"{neuron_type.value} minus control: ln P(English), middle"] = (
                "—"
                if contrast is None
                else f"{interval(contrast['difference'], contrast['ci_low'], contrast['ci_high'])} "
                f"vs {contrast['baseline']}"
            )
        rows.append(row)
    return pl.DataFrame(rows)


def contrast_row(contrasts: pl.DataFrame, language: str, neuron_type: str) -> dict | None:
    """The row of ``neuron_type`` against its strictest control on ln P(English) in the middle layers."""
    from transfer_neurons.reporting.claims import CONTROL_ORDER

    if contrasts.height == 0:
        return None
    rows = contrasts.filter(
        (pl.col("language") == language) & (pl.col("neuron_type") == neuron_type)
        & (pl.col("measure") == "log_english_middle")
    )  # fmt: skip
    by_control = {row["baseline"]: row for row in rows.iter_rows(named=True)}
    return next((by_control[kind] for kind in CONTROL_ORDER if kind in by_control), None)


def script_numbers(tables: Tables, context: FigureContext) -> pl.DataFrame:
    summary = tables["logit_lens_scripts"].filter(pl.col("script_language") == pl.col("language"))
    frame = summary.with_columns(
        pl.format("{} [{}, {}] (n {})", *(pl.col(name).round(3) for name in ("mean", "ci_low", "ci_high")),
                  "n").alias("share")
    )  # fmt: skip
    return frame.pivot(on="group", index="language", values="share").sort("language")


# --- claims ----------------------------------------------------------------------------------------------
def latent_english_finding(tables: Tables, context: FigureContext) -> Finding | None:
    """The normal run, per language: the English token's lead over the L2 token in the middle layers (ln ratio,
    mean over questions with a 95 % CI). The L2 token's lead at the last layer is shown beside it, not judged:
    on questions the model answers it is expected whatever the middle layers do."""
    phases = tables.get("logit_lens_phases")
    if phases is None:
        return None

    def normal(language: str, measure: str) -> dict | None:
        found = phases.filter(
            (pl.col("language") == language) & (pl.col("group") == NORMAL) & (pl.col("measure") == measure)
        )
        return found.row(0, named=True) if found.height else None

    cases = []
    for language in sorted(set(phases["language"].to_list())):
        middle, last = normal(language, "english_lead_middle"), normal(language, "l2_lead_last")
        if middle is None:
            cases.append(Case(language, None, None, None, 0, undecidable="no question with distinct first tokens"))
            continue
        # No "; " inside: the claims table separates cases with it.
        detail = f"{middle['distinct']} of {middle['answered']} answered questions have distinct first tokens"
        if last is not None:
            detail += f", {MEASURE_TITLES['l2_lead_last']} {interval(last['mean'], last['ci_low'], last['ci_high'])}"
        cases.append(Case(language, middle["mean"], middle["ci_low"], middle["ci_high"], int(middle["n"]), detail))
    return Finding("the L2 answer's token at the same layers, question by question", tuple(cases))


def type1_english_finding(tables: Tables, context: FigureContext) -> Finding | None:
    """Type-1 minus each control: ln P(English) in the middle layers, paired by question, per language; the
    strictest control decides. A language without questions of distinct first tokens is a case with n = 0."""
    contrasts, phases = tables.get("logit_lens_contrasts"), tables.get("logit_lens_phases")
    if contrasts is None:
        return None
    found = None
    if contrasts.height:
        rows = contrasts.filter(
            (pl.col("neuron_type") == NeuronType.TYPE1.value) & (pl.col("measure") == "log_english_middle")
        )
        found = contrast_cases(rows, ["language"])
    measured = {case.label: case for case in (found.cases if found else ())}
    languages = sorted(set(phases["language"].to_list()) if phases is not None else measured)
    cases = tuple(
        measured.get(
            language, Case(language, None, None, None, 0, undecidable="no question with distinct first tokens")
        )
        for language in languages
    )
    return Finding(found.control if found else "—", cases) if cases else None


SESOI_WHY = "0.2 nats: one probability about a fifth above the other (e^0.2 = 1.22)"
LATENT_ENGLISH = ClaimSettings(
    effect="normal run, per question: ln P(English token) / P(L2 token) of the answers' first tokens over the "
    "middle layers (depth 0.5-0.9); the last layer's ln P(L2) / P(English) is shown beside it",
    side=+1,
    smallest_effect=0.2,
    unit="questions",
    controls="the L2 answer's token at the same layers (paired by question)",
    why=SESOI_WHY,
    size_option="evaluation.logit_lens.limit",
)
LATENT_ENGLISH_TYPE1 = ClaimSettings(
    effect="Type-1 minus control: ln of the English answer's first-token probability over the middle layers "
    "(depth 0.5-0.9), per question",
    side=-1,
    smallest_effect=0.2,
    unit="questions",
    controls="magnitude-matched, random sets (the strictest present decides)",
    why="0.2 nats: the English phase about a fifth weaker (e^-0.2 = 0.82)",
    size_option="evaluation.logit_lens.limit",
)


# --- registrations ---------------------------------------------------------------------------------------
for _name, _build in (
    ("logit_lens_curves", logit_lens_curves),
    ("logit_lens_phases", logit_lens_phases),
    ("logit_lens_contrasts", logit_lens_contrasts),
):
    TABLES.register(
        SummaryTable(
            _name,
            ("logit_lens",),
            lambda results, settings, _build=_build: _build(  # type: ignore[misc]  # the default binds the loop's _build
                results["logit_lens"], settings.main_label, settings.resamples
            ),  # fmt: skip
            requires=PART,
        )
    )
TABLES.register(
    SummaryTable(
        "logit_lens_scripts",
        ("logit_lens_neurons",),
        lambda results, settings: logit_lens_scripts(
            results["logit_lens_neurons"], settings.main_label, settings.resamples
        ),  # fmt: skip
        requires=PART,
    )
)
FIGURES.register(
    Figure(
        "logit_lens",
        MODEL_SCOPE,
        curves_chart,
        "Beyond the paper, after nostalgebraist's logit lens (2020) and Wendler et al. (2024): at every layer the "
        "last prompt token's residual state is decoded through the model's final norm and unembedding, and the "
        "probability of the gold answer's first token is read in the question's language and in English, on the "
        "QA questions the unmodified model answers (MKQA F1 >= evaluation.logit_lens.threshold) whose two answers "
        "start with different tokens; a row per language, a panel per condition (every prompt token deactivated). "
        "Shaded: the middle layers (depth 0.5-0.9). If the model thinks in English, the English answer rises there "
        "before the L2 answer takes over at the end (the latent_english claim), and deactivating Type-1 neurons "
        "lowers that English bump more than its control (latent_english_type1). The table gives the questions "
        "behind each row, the share of answered questions whose first generated token is the answer's (where it is "
        "not, the model first writes something else, such as '<strong>', and the answer's token is read one step "
        "early), and the measures in natural logs, mean [95 % CI] over questions.",
        table="logit_lens_curves",
        numbers=phase_numbers,
        title=curves_title,
        requires=PART,
    )
)
FIGURES.register(
    Figure(
        "logit_lens_neurons",
        MODEL_SCOPE,
        scripts_chart,
        "Beyond the paper: the per-neuron logit lens. Each deactivated neuron's write vector is read through the "
        "final norm and unembedding; of its top promoted tokens (evaluation.browser.lens_tokens), the share written "
        "in the language's script and in English's (a token without letters counts in neither). If Type-2 neurons "
        "write the output language back, their promoted tokens should lean to the language's script more than "
        "Type-1's and the controls'. For a Latin-script language the two shares are one. The table gives the mean "
        "share [95 % CI over neurons] in the language's script.",
        table="logit_lens_scripts",
        numbers=script_numbers,
        requires=PART,
    )
)
CLAIMS.register(
    Claim(
        "latent_english",
        "Under the normal run, the English answer's first token is more probable than the L2 answer's in the middle "
        "layers, before the L2 answer's takes over at the end (logit lens)",
        "beyond the paper",
        latent_english_finding,
        settings=LATENT_ENGLISH,
    )
)
CLAIMS.register(
    Claim(
        "latent_english_type1",
        "Deactivating Type-1 neurons lowers the English answer's probability in the middle layers beyond controls",
        "beyond the paper",
        type1_english_finding,
        settings=LATENT_ENGLISH_TYPE1,
    )
)

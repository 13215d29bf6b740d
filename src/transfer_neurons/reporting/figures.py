"""The figure registry: every figure of the workflow, declared once.

An entry says which results the figure reads, how its table is prepared, which chart draws it,
its caption (what it shows and what the paper found), the small table of this run's key numbers
and the full summary table the report offers under it. The Snakefile reads the registry to plan one job
per figure; ``draw_figure`` is what that job runs.

Scopes: a ``detector`` figure is drawn per model and detector
(``reports/figures/{model}/{detector}/{name}.png``), a ``model`` figure per model
(``reports/figures/{model}/evaluation/{name}.png``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transfer_neurons.data.tidy import read_tables
from transfer_neurons.lazy import lazy_import
from transfer_neurons.reporting import charts, numbers, summaries

pl = lazy_import("polars")  # the Snakefile reads this registry at start-up

DETECTOR_SCOPE, MODEL_SCOPE = "detector", "model"


@dataclass(frozen=True)
class FigureSettings:
    """The run settings figures and summary tables depend on."""

    main_label: str  # the top-N label of the main N (e.g. "paper_fraction")
    knn_metric: str  # the mutual k-NN metric figures and tables quote
    resamples: int  # bootstrap resamples for confidence intervals
    pivot: str = "en"  # the pivot language (English)
    detector: str = "centroid"  # the detector whose neurons the evaluations use


@dataclass(frozen=True)
class FigureContext:
    """What a figure is drawn for: the model, its facts, the settings and (detector figures) the detector."""

    model: str
    settings: FigureSettings
    facts: Mapping[str, Any] = field(default_factory=dict)
    detector: str | None = None


Results = Mapping[str, "pl.DataFrame"]  # result name -> one table over every language


@dataclass(frozen=True)
class Figure:
    name: str
    scope: str  # DETECTOR_SCOPE or MODEL_SCOPE
    inputs: tuple[str, ...]  # result names; the Snakefile maps each to the files of the rule that writes it
    prepare: Callable[[Results, FigureContext], pl.DataFrame]
    chart: Callable[[pl.DataFrame, str], Any]
    caption: str  # what the figure shows and what the paper found
    numbers: Callable[[Mapping[str, pl.DataFrame], FigureContext], pl.DataFrame] | None = None  # key numbers
    table: str | None = None  # the full summary table the report offers under the figure
    title: Callable[[Results, FigureContext], str] | None = None  # default: "{model}: {name}"
    min_detectors: int = 1  # figures that compare detectors need more than one
    requires: str | None = None  # an optional part of the workflow (e.g. "lape") the figure needs

    def title_for(self, results: Results, context: FigureContext) -> str:
        if self.title is not None:
            return self.title(results, context)
        return f"{context.model}: " + self.name.replace("_", " ")


# --- how single figures prepare their table and title -----------------------------------------


def main_top_neurons(results: Results, context: FigureContext) -> pl.DataFrame:
    return results["neurons"].filter(pl.col("top_n_label") == str(context.settings.main_label))


def layer_distribution_table(results: Results, context: FigureContext) -> pl.DataFrame:
    return summaries.layer_counts(main_top_neurons(results, context), context.facts["n_layers"])


def layer_distribution_title(results: Results, context: FigureContext) -> str:
    sizes = main_top_neurons(results, context).select("neuron_type", "top_n").unique().sort("neuron_type")
    listed = ", ".join(f"{neuron_type} {n}" for neuron_type, n in sizes.iter_rows())
    return f"{context.model}: layers of the top-N transfer neurons (N: {listed})"


def states_by_group(results: Results, context: FigureContext) -> pl.DataFrame:
    return summaries.metric_by_group(results["states"], context.settings.main_label)


def first_language_attention(results: Results, context: FigureContext) -> pl.DataFrame:
    example = results["attention_example"]
    return example.filter(pl.col("language") == example["language"][0])


def attention_example_title(results: Results, context: FigureContext) -> str:
    first_language = results["attention_example"]["language"][0]
    return f"{context.model}: attention example ({first_language}, first test sentence)"


def lape_layer_counts(results: Results, context: FigureContext) -> pl.DataFrame:
    lape = results["lape"]
    grid = (
        lape.select("language")
        .unique()
        .join(pl.DataFrame({"layer": list(range(context.facts["n_layers"]))}, schema={"layer": pl.Int32}), how="cross")
    )
    counts = lape.group_by("language", "layer").len("neurons")
    return grid.join(counts, on=["language", "layer"], how="left").fill_null(0).sort("language", "layer")


def only(name: str) -> Callable[[Results, FigureContext], pl.DataFrame]:
    """A figure drawn from one result table as it is."""
    return lambda results, context: results[name]


FIGURES: dict[str, Figure] = {
    figure.name: figure
    for figure in (
        Figure(
            "layer_distribution",
            DETECTOR_SCOPE,
            ("neurons",),
            layer_distribution_table,
            charts.layer_distribution_chart,
            "The paper finds Type-1 neurons in the early-to-middle layers and Type-2 neurons "
            "concentrated in the final layers.",
            numbers.detection_numbers,
            title=layer_distribution_title,
        ),
        Figure(
            "score_profile",
            DETECTOR_SCOPE,
            ("scores",),
            lambda results, context: summaries.per_layer_profile(results["scores"]),
            charts.score_profile_chart,
            "Scores measure how far one neuron's write moves the last-token state toward the "
            "shared (Type-1) or language-specific (Type-2) centroid.",
            numbers.detection_numbers,
            title=lambda results, context: f"{context.model}: per-layer neuron scores ({context.detector} detector)",
        ),
        Figure(
            "qa_f1",
            MODEL_SCOPE,
            ("qa",),
            lambda results, context: summaries.qa_summary(
                results["qa"], context.settings.main_label, context.settings.resamples
            ),
            charts.qa_f1_chart,
            "MKQA F1 (MKQA's own answer normalisation) of greedy answers in each language, with every "
            "prompt token deactivated (prompt) or only the last one (prompt_last), the paper's two settings. "
            "The paper reports that deactivating the top-1000 Type-1 neurons collapses multilingual QA "
            "while as many random neurons barely change it.",
            numbers.qa_numbers,
            table="qa_summary",
        ),
        Figure(
            "knn_alignment",
            MODEL_SCOPE,
            ("states",),
            states_by_group,
            charts.knn_chart,
            "The paper reports that mutual k-NN alignment of English and L2 states rises through the "
            "middle layers and drops when Type-1 neurons are deactivated, but not for random neurons.",
            numbers.knn_numbers,
            table="alignment_summary",
        ),
        Figure(
            "state_similarity",
            MODEL_SCOPE,
            ("states",),
            states_by_group,
            charts.state_similarity_chart,
            "Parallel English-L2 pairs are far more similar than non-parallel pairs in the middle "
            "layers (the shared semantic space); deactivating Type-1 neurons narrows the gap.",
            numbers.state_numbers,
        ),
        Figure(
            "activation_similarity",
            MODEL_SCOPE,
            ("states",),
            states_by_group,
            charts.activation_similarity_chart,
            "MLP activation patterns of parallel pairs are more similar than of non-parallel "
            "pairs, showing shared neurons process the same meaning across languages.",
            numbers.activation_numbers,
        ),
        Figure(
            "language_space",
            MODEL_SCOPE,
            ("language_space",),
            only("language_space"),
            charts.language_space_chart,
            "Language centroids converge in the middle layers and separate again near the output.",
            numbers.language_space_numbers,
        ),
        Figure(
            "language_pca",
            MODEL_SCOPE,
            ("language_pca",),
            only("language_pca"),
            charts.language_pca_chart,
            "In the middle layers the languages overlap; at the first and last layers they form separate clusters.",
            numbers.pca_numbers,
        ),
        Figure(
            "specificity",
            MODEL_SCOPE,
            ("specificity",),
            lambda results, context: summaries.specificity_summary(results["specificity"]),
            charts.specificity_chart,
            "Language specificity of the top-N neurons: eta^2 and a one-way ANOVA of each neuron's last-token "
            "activation, with the sentences of the neurons' language against all others (language) or of its "
            "language group against all others (family), as in the paper's test. The paper finds Type-2 neurons "
            "more language-specific than Type-1 neurons; its corrected tables group ja and ko against the "
            "Indo-European languages.",
            numbers.specificity_numbers,
            table="specificity_summary",
        ),
        Figure(
            "attention_shift",
            MODEL_SCOPE,
            ("attention",),
            only("attention"),
            charts.attention_shift_chart,
            "Beyond the paper: how the last token's attention changes when neurons are deactivated.",
            numbers.attention_numbers,
        ),
        Figure(
            "attention_example",
            MODEL_SCOPE,
            ("attention_example",),
            first_language_attention,
            charts.attention_example_chart,
            "Head-averaged attention of the last token over the first test sentence's tokens.",
            title=attention_example_title,
        ),
        Figure(
            "detector_agreement",
            MODEL_SCOPE,
            ("agreement",),
            lambda results, context: results["agreement"].filter(
                pl.col("top_n_label") == str(context.settings.main_label)
            ),
            charts.detector_agreement_chart,
            "Beyond the paper: how many of the reference detector's top-N neurons (the one the "
            "evaluations use) each other configured detector also finds, per layer.",
            numbers.agreement_numbers,
            min_detectors=2,
        ),
        Figure(
            "loss_change",
            MODEL_SCOPE,
            ("loss",),
            lambda results, context: summaries.loss_summary(
                results["loss"], context.settings.main_label, context.settings.resamples
            ),
            charts.loss_change_chart,
            "Beyond the paper: how much each condition raises the next-token loss of held-out text in each "
            "language, with the neurons scaled at every position. Transfer neurons of a language should hurt "
            "that language more than English; a set that hurts every language alike damages the model.",
            numbers.loss_numbers,
            table="loss_summary",
        ),
        Figure(
            "baseline_contrasts",
            MODEL_SCOPE,
            ("state_pairs", "qa", "attention_sentences", "loss"),
            lambda results, context: summaries.baseline_contrasts(
                results["state_pairs"],
                results["qa"],
                results["attention_sentences"],
                results.get("loss"),
                context.settings.main_label,
                context.settings.resamples,
            ),
            charts.baseline_contrasts_chart,
            "Transfer neurons against each baseline, analysis by analysis: the mean difference, paired by "
            "sentence or question, with its bootstrap 95 % CI. Random sets match the count and the layers; "
            "magnitude-matched sets also match how much each neuron writes, which the centroid score favours. "
            "A CI that excludes 0 is an effect the baseline cannot explain.",
            numbers.contrast_numbers,
            table="baseline_contrasts",
        ),
        Figure(
            "lape_layers",
            MODEL_SCOPE,
            ("lape",),
            lape_layer_counts,
            charts.lape_layers_chart,
            "LAPE language-specific neurons (Tang et al., ACL 2024): the lowest-entropy 1 % of neurons by how "
            "their activation probability spreads over languages. Tang et al. find them mostly in the top and "
            "bottom layers.",
            numbers.lape_numbers,
            table="lape_summary",
            requires="lape",
        ),
        Figure(
            "lape_overlap",
            MODEL_SCOPE,
            ("lape_overlap",),
            only("lape_overlap"),
            charts.lape_overlap_chart,
            "How many of a language's transfer neurons are also its LAPE language-specific neurons, per layer; "
            "the tick is the overlap two random sets of those sizes would have. Type-2 neurons, which the paper "
            "finds more language-specific, should overlap more than Type-1.",
            numbers.lape_numbers,
            table="lape_summary",
            requires="lape",
        ),
        Figure(
            "harness_scores",
            MODEL_SCOPE,
            ("harness",),
            lambda results, context: summaries.harness_summary(results["harness"]),
            charts.harness_chart,
            "lm-evaluation-harness tasks under each condition (bars: score with the harness's stderr; "
            "ticks: the range over random seeds), per language whose neurons are scaled. The paper reports "
            "that deactivating Type-1 neurons during the prompt lowers MMLU-ProX accuracy in the L2 while as "
            "many random neurons do not.",
            numbers.harness_numbers,
            table="harness_summary",
            requires="lm_eval",
        ),
        Figure(
            "patching",
            MODEL_SCOPE,
            ("patching",),
            lambda results, context: summaries.patching_summary(results["patching"]),
            charts.patching_chart,
            "Beyond the paper: activation patching. The Type-1 neurons are deactivated at the last token (the "
            "corrupted run), then their activations are written back, one layer's at a time (single) or every "
            "layer's up to that one (cumulative), from the clean L2 run (restoration), the English run of the "
            "same pair (interchange) or their training mean. Recovery 1 is the clean alignment, 0 the corrupted "
            "one. The control set's patching says what neurons of the same sizes give back.",
            numbers.patching_numbers,
            table="patching_summary",
            requires="patching",
        ),
        Figure(
            "dose_response",
            MODEL_SCOPE,
            ("states", "qa"),
            lambda results, context: summaries.dose_response(
                results["states"], results.get("qa"), context.settings.knn_metric
            ),
            charts.dose_response_chart,
            "Beyond the paper: alignment and QA as the number of deactivated neurons grows.",
            numbers.dose_numbers,
            table="dose_summary",
        ),
    )
}


def figures_of(scope: str, n_detectors: int, parts: frozenset[str] = frozenset()) -> list[str]:
    """The names of the figures drawn in ``scope`` when ``n_detectors`` detectors and the optional
    ``parts`` of the workflow run."""
    return [
        figure.name
        for figure in FIGURES.values()
        if figure.scope == scope
        and n_detectors >= figure.min_detectors
        and (figure.requires is None or figure.requires in parts)
    ]


def draw_figure(
    name: str, inputs: Mapping[str, Sequence[str | Path]], context: FigureContext, png: Path, spec: Path
) -> None:
    """Read the figure's results, prepare its table, draw it and save the PNG and the Vega-Lite spec."""
    figure = FIGURES[name]
    results = {result: read_tables(inputs[result]) for result in figure.inputs}
    data = figure.prepare(results, context)
    charts.save_chart(figure.chart(data, figure.title_for(results, context)), Path(png), Path(spec))

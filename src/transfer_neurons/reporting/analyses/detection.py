"""Detection: where the top-N transfer neurons sit, and how the scores run over layers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from transfer_neurons.evaluation.statistics import bootstrap_mean_ci
from transfer_neurons.lazy import lazy_import
from transfer_neurons.names import NeuronType
from transfer_neurons.reporting.charts import type_scale
from transfer_neurons.reporting.claims import Case, Finding
from transfer_neurons.reporting.registry import (
    CLAIMS,
    DETECTOR_SCOPE,
    FIGURES,
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

if TYPE_CHECKING:
    import altair as alt
    import polars as pl
else:
    alt = lazy_import("altair")
    pl = lazy_import("polars")

PER_LAYER_TOP_K = 10  # the score profile shows the mean of each layer's best neurons

RESULTS.register(ResultFile("scores", "score_neurons", "scores"))
RESULTS.register(ResultFile("neurons", "score_neurons", "top"))


# --- summaries -------------------------------------------------------------------------------------
def layer_counts(top_neurons: pl.DataFrame, n_layers: int) -> pl.DataFrame:
    """Neurons per (language, type, layer), with explicit zeros for every layer."""
    grid = (
        top_neurons.select("language", "neuron_type")
        .unique()
        .join(pl.DataFrame({"layer": list(range(n_layers))}, schema={"layer": pl.Int32}), how="cross")
    )
    counts = top_neurons.group_by("language", "neuron_type", "layer").len("neurons")
    return (
        grid.join(counts, on=["language", "neuron_type", "layer"], how="left")
        .with_columns(pl.col("neurons").fill_null(0))
        .sort("language", "neuron_type", "layer")
    )


def per_layer_profile(scores: pl.DataFrame, top_k: int = PER_LAYER_TOP_K) -> pl.DataFrame:
    """Mean score of each layer's ``top_k`` highest-scoring neurons, per language and type."""
    return (
        scores.sort("score", descending=True)
        .group_by("language", "neuron_type", "layer")
        .agg(pl.col("score").head(top_k).mean().alias("top_score"), pl.col("candidate").first())
        .sort("language", "neuron_type", "layer")
    )


def detection_summary(neurons: pl.DataFrame, main_label: str) -> pl.DataFrame:
    """Per detector, language and type: N and where the top-N neurons sit."""
    return (
        neurons.filter(pl.col("top_n_label") == str(main_label))
        .group_by("detector", "language", "neuron_type")
        .agg(
            pl.col("top_n").first(),
            pl.col("layer").median().alias("median_layer"),
            pl.col("layer").min().alias("min_layer"),
            pl.col("layer").max().alias("max_layer"),
        )
        .sort("detector", "language", "neuron_type")
    )


def placement_summary(neurons: pl.DataFrame, scores: pl.DataFrame, main_label: str, resamples: int) -> pl.DataFrame:
    """Per detector, language and type: where the top-N neurons sit within their candidate layers.

    ``position`` is a neuron's place in its type's candidate layers (0: the first, 1: the last);
    neurons spread evenly over those layers have a mean position of 0.5 (every layer has as many
    neurons). Gives the candidate layers, the median layer, the mean position with a bootstrap 95 %
    CI over the neurons and their number.
    """
    candidates = (
        scores.filter(pl.col("candidate"))
        .group_by("detector", "language", "neuron_type")
        .agg(pl.col("layer").min().alias("first_candidate"), pl.col("layer").max().alias("last_candidate"))
    )
    span = (pl.col("last_candidate") - pl.col("first_candidate")).clip(lower_bound=1)
    top = (
        neurons.filter(pl.col("top_n_label") == str(main_label))
        .join(candidates, on=["detector", "language", "neuron_type"])
        .with_columns(((pl.col("layer") - pl.col("first_candidate")) / span).alias("position"))
    )
    rows = []
    keys = ["detector", "language", "neuron_type"]
    for values, part in top.sort(*keys, "layer", "neuron").group_by(*keys, maintain_order=True):
        mean, low, high = bootstrap_mean_ci(part["position"].to_numpy(), resamples)
        rows.append({**dict(zip(keys, values, strict=True)), "first_candidate": part["first_candidate"][0],
                     "last_candidate": part["last_candidate"][0], "median_layer": part["layer"].median(),
                     "mean_position": mean, "ci_low": low, "ci_high": high, "neurons": part.height})  # fmt: skip
    return pl.DataFrame(rows, infer_schema_length=None).sort(keys)


def main_top_neurons(results: Results, context: FigureContext) -> pl.DataFrame:
    return results["neurons"].filter(pl.col("top_n_label") == str(context.settings.main_label))


# --- charts ------------------------------------------------------------------------------------------
def layer_distribution_chart(counts: pl.DataFrame, title: str) -> alt.FacetChart:
    """Bars: how many of the top-N Type-1 and Type-2 neurons sit in each layer, per language."""
    return (
        alt.Chart(counts)
        .mark_bar()
        .encode(
            x=alt.X("layer:O", title="layer"),
            y=alt.Y("neurons:Q", title="top-N neurons"),
            color=alt.Color("neuron_type:N", scale=type_scale(), title="neuron type"),
            tooltip=["language:N", "neuron_type:N", "layer:O", "neurons:Q"],
        )
        .properties(width=320, height=140)
        .facet(row=alt.Row("language:N", title=None))
        .properties(title=title)
    )


def score_profile_chart(profile: pl.DataFrame, title: str) -> alt.FacetChart:
    """Lines over layers of the mean top-k score, one line per language, one panel per type."""
    return (
        alt.Chart(profile)
        .mark_line(point=True)
        .encode(
            x=alt.X("layer:Q", title="layer"),
            y=alt.Y("top_score:Q", title=f"mean score of the layer's top {PER_LAYER_TOP_K}"),
            color=alt.Color("language:N"),
            strokeDash=alt.StrokeDash(
                "candidate:N",
                scale=alt.Scale(domain=[True, False], range=[[1, 0], [4, 3]]),
                title="candidate layer",
            ),
            tooltip=["language:N", "neuron_type:N", "layer:Q", "top_score:Q"],
        )
        .properties(width=320, height=180)
        .facet(column=alt.Column("neuron_type:N", title=None))
        .resolve_scale(y="independent")
        .properties(title=title)
    )


def layer_distribution_title(results: Results, context: FigureContext) -> str:
    sizes = main_top_neurons(results, context).select("neuron_type", "top_n").unique().sort("neuron_type")
    listed = ", ".join(f"{neuron_type} {n}" for neuron_type, n in sizes.iter_rows())
    return f"{context.model}: layers of the top-N transfer neurons (N: {listed})"


def detection_numbers(tables: Tables, context: FigureContext) -> pl.DataFrame:
    table = tables["detection_summary"].filter(pl.col("detector") == context.detector)
    return table.select("language", "neuron_type", "top_n", "median_layer", "min_layer", "max_layer")


# --- the claim ---------------------------------------------------------------------------------------
def placement(tables: Tables, context: FigureContext) -> Finding | None:
    """Type-2 neurons sit in the last of their candidate layers: their mean position there minus 0.5.

    Not a paired contrast, and half of it is fixed by design: Type-1 candidates are the first layers
    (``detection.type1_fraction``), so any set of them sits early. The part the candidate layers do not
    fix is whether Type-2 neurons crowd into the last layers, beyond neurons spread evenly over the same
    candidates; its interval resamples the set's neurons (how firmly the set leans late, not a
    sampling of models). Type-1's place is shown beside it.
    """
    summary = tables.get("placement_summary")
    if summary is None:
        return None
    rows = summary.filter(pl.col("detector") == context.settings.detector)
    type1, type2 = NeuronType.TYPE1.value, NeuronType.TYPE2.value
    n_layers = context.facts.get("n_layers", "?")
    cases = []
    for (lang,), part in rows.sort("language").group_by("language", maintain_order=True):
        by_type = {row["neuron_type"]: row for row in part.iter_rows(named=True)}
        late, early = by_type.get(type2), by_type.get(type1)
        shown = [
            f"{name} median layer {row['median_layer']:g} of {n_layers} (candidates {row['first_candidate']}-"
            f"{row['last_candidate']}), mean position {row['mean_position']:.2f}"
            for name, row in (("Type-1", early), ("Type-2", late))
            if row is not None
        ]
        if late is None:
            cases.append(Case(lang, None, None, None, 0, ", ".join(shown), "no Type-2 neurons"))
            continue
        cases.append(Case(lang, late["mean_position"] - 0.5, late["ci_low"] - 0.5, late["ci_high"] - 0.5,
                          late["neurons"], ", ".join(shown)))  # fmt: skip
    return Finding("neurons spread evenly over the same candidate layers", tuple(cases))


# --- registrations -----------------------------------------------------------------------------------
TABLES.register(
    SummaryTable(
        "detection_summary",
        ("neurons",),
        lambda results, settings: detection_summary(results["neurons"], settings.main_label),
    )
)
TABLES.register(
    SummaryTable(
        "placement_summary",
        ("neurons", "scores"),
        lambda results, settings: placement_summary(
            results["neurons"], results["scores"], settings.main_label, settings.resamples
        ),
    )
)
FIGURES.register(
    Figure(
        "layer_distribution",
        DETECTOR_SCOPE,
        layer_distribution_chart,
        "The paper finds Type-1 neurons in the early-to-middle layers and Type-2 neurons "
        "concentrated in the final layers.",
        inputs=("neurons",),
        prepare=lambda results, context: layer_counts(main_top_neurons(results, context), context.facts["n_layers"]),
        numbers=detection_numbers,
        title=layer_distribution_title,
    )
)
FIGURES.register(
    Figure(
        "score_profile",
        DETECTOR_SCOPE,
        score_profile_chart,
        "Scores measure how far one neuron's write moves the last-token state toward the "
        "shared (Type-1) or language-specific (Type-2) centroid.",
        inputs=("scores",),
        prepare=lambda results, context: per_layer_profile(results["scores"]),
        numbers=detection_numbers,
        title=lambda results, context: f"{context.model}: per-layer neuron scores ({context.detector} detector)",
    )
)
CLAIMS.register(
    Claim(
        "placement",
        "Type-1 neurons sit in the early and middle layers, Type-2 neurons in the last ones",
        "paper",
        placement,
        settings=ClaimSettings(
            effect="mean position of the Type-2 neurons in their candidate layers (0: first, 1: last) minus 0.5",
            side=+1,
            smallest_effect=0.10,
            unit="neurons",
            controls="neurons spread evenly over the same candidate layers (mean position 0.5)",
            why="a tenth of the candidate layers; Type-1's half of the claim is fixed by design (its candidates "
            "are the first detection.type1_fraction of layers), so Type-2's pull to the last layers is tested",
            size_option="detection.top_n",
        ),
    )
)

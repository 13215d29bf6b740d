"""This run's numbers as one sentence per figure, from the summary tables.

Each function reads the summary tables of one model (``reporting.tables``) and says what this
run measured in the figure's terms; the figure registry names which function a figure uses.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from transfer_neurons.lazy import lazy_import
from transfer_neurons.names import ACTIVATION_COSINE, NEURON_TYPES, NORMAL, STATE_COSINE, cosine_metric

if TYPE_CHECKING:
    from transfer_neurons.reporting.figures import FigureContext

Tables = Mapping[str, "pl.DataFrame"]  # the summary tables of one model, by name

pl = lazy_import("polars")  # the Snakefile reads the figure registry, which refers to these functions


def qa_measured(tables: Tables, context: FigureContext) -> str:
    summary, contrasts = tables["qa_summary"], tables["qa_contrasts"]
    parts = []
    for (lang, positions), rows in summary.group_by("language", "positions", maintain_order=True):
        by_group = {row["group"]: row for row in rows.iter_rows(named=True)}
        if NORMAL not in by_group:
            continue
        text = f"{lang} ({positions}): MKQA F1 {by_group[NORMAL]['mkqa_f1']:.3f} normally"
        versus = contrasts.filter((pl.col("language") == lang) & (pl.col("positions") == positions))
        for row in versus.iter_rows(named=True):
            text += (
                f"; {row['neuron_type']} off {row['transfer']:.3f} vs {row['baseline']} {row['baseline_value']:.3f} "
                f"(difference {row['difference']:+.3f}, 95 % CI {row['ci_low']:+.3f} to {row['ci_high']:+.3f})"
            )
        parts.append(text)
    return "This run: " + ". ".join(parts) + "." if parts else ""


def knn_measured(tables: Tables, context: FigureContext) -> str:
    table, metric = tables["alignment_summary"], context.settings.knn_metric
    parts = []
    for lang, rows in table.group_by("language", maintain_order=True):
        values = dict(zip(rows["group"], rows[metric], strict=True))
        listed = ", ".join(f"{group} {values[group]:.3f}" for group in (NORMAL, *NEURON_TYPES, "random_type1")
                           if group in values)  # fmt: skip
        parts.append(f"{lang[0]}: {listed}")
    return f"This run, {metric} averaged over layers: " + "; ".join(parts) + "."


def detection_measured(tables: Tables, context: FigureContext) -> str:
    rows = tables["detection_summary"].filter(pl.col("detector") == context.detector)
    parts = [
        f"{row['language']} {row['neuron_type']}: N = {row['top_n']}, median layer {row['median_layer']:.0f}"
        for row in rows.iter_rows(named=True)
    ]
    return "This run: " + "; ".join(parts) + "."


def _gap_measured(table: pl.DataFrame, quantity: str) -> str:
    parallel, non_parallel = cosine_metric(quantity, "parallel"), cosine_metric(quantity, "non_parallel")
    normal = table.filter(pl.col("group") == NORMAL)
    parts = [
        f"{row['language']}: parallel {row[parallel]:.3f} vs non-parallel {row[non_parallel]:.3f}"
        for row in normal.iter_rows(named=True)
    ]
    return "This run, normal condition, averaged over layers: " + "; ".join(parts) + "."


def state_gap_measured(tables: Tables, context: FigureContext) -> str:
    return _gap_measured(tables["alignment_summary"], STATE_COSINE)


def activation_gap_measured(tables: Tables, context: FigureContext) -> str:
    return _gap_measured(tables["alignment_summary"], ACTIVATION_COSINE)


def language_space_measured(tables: Tables, context: FigureContext) -> str:
    table = tables["language_space_summary"]
    parts = [
        f"{row['condition']}: first layer {row['first_layer']:.3f}, middle {row['middle_layer']:.3f}, "
        f"last {row['last_layer']:.3f} (highest at layer {row['peak_layer']})"
        for row in table.iter_rows(named=True)
    ]
    return "This run, mean cosine between different languages' centroids: " + "; ".join(parts) + "."


def attention_measured(tables: Tables, context: FigureContext) -> str:
    table = tables["attention_summary"]
    parts = [
        f"{row['condition']}: mean JS {row['mean_js']:.4f}, max {row['max_js']:.4f} (layer {row['max_layer']})"
        for row in table.iter_rows(named=True)
    ]
    return "This run, over layers, heads and languages: " + "; ".join(parts) + "."


def agreement_measured(tables: Tables, context: FigureContext) -> str:
    parts = [
        f"{row['detector']}, {row['neuron_type']}: {row['shared_share']:.2f} of the {row['reference']} detector's top-N"
        for row in tables["agreement_summary"].iter_rows(named=True)
    ]
    return "This run, share also found by the other detector: " + "; ".join(parts) + "."


def dose_measured(tables: Tables, context: FigureContext) -> str:
    table, knn_metric = tables["dose_summary"], context.settings.knn_metric
    largest = table.filter(pl.col("top_n") == pl.col("top_n").max().over("language", "neuron_type"))
    means = largest.group_by("neuron_type", "kind").agg(pl.col(knn_metric).mean(), pl.col("top_n").first())
    parts = [
        f"{row['neuron_type']} {row['kind']} at N = {row['top_n']}: {row[knn_metric]:.3f}"
        for row in means.sort("neuron_type", "kind").iter_rows(named=True)
    ]
    return f"This run, {knn_metric} averaged over layers and languages: " + "; ".join(parts) + "."


def pca_measured(tables: Tables, context: FigureContext) -> str:
    projection = tables["language_pca"]
    counts = projection.group_by("language").len().sort("language")
    listed = ", ".join(f"{lang} {n}" for lang, n in counts.iter_rows())
    layers = ", ".join(str(layer) for layer in sorted(projection["layer"].unique()))
    return f"This run: layers {layers}; points per language over all layers: {listed}."


def specificity_measured(tables: Tables, context: FigureContext) -> str:
    summary = tables["specificity_summary"]
    by_type = summary.group_by("neuron_type").agg(
        pl.col("share_eta_0.1_p_0.05").mean(), pl.col("share_eta_0.25").mean()
    )
    parts = [
        f"{row['neuron_type']}: {row['share_eta_0.1_p_0.05']:.2f} with eta^2 > 0.1 and p < 0.05, "
        f"{row['share_eta_0.25']:.2f} with eta^2 > 0.25"
        for row in by_type.sort("neuron_type").iter_rows(named=True)
    ]
    return "This run (mean over languages): " + "; ".join(parts) + "."

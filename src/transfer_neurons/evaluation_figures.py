"""How each evaluation figure's tables are prepared and drawn (inputs: ``outputs.FIGURE_INPUTS``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import polars as pl

from transfer_neurons import figures_evaluation as charts
from transfer_neurons import summaries


def _read(paths: Sequence[str | Path]) -> pl.DataFrame:
    return pl.concat([pl.read_parquet(path) for path in paths], how="diagonal_relaxed")


def build_chart(figure: str, inputs: Mapping[str, Sequence[str]], *, model: str, main_label: str, knn_metric: str,
                resamples: int):  # fmt: skip
    """Load the inputs of ``figure``, summarise them and return the Altair chart."""
    tables = {kind: _read(paths) for kind, paths in inputs.items()}
    title = f"{model}: " + figure.replace("_", " ")
    if figure == "qa_f1":
        return charts.qa_f1_chart(summaries.qa_summary(tables["qa"], main_label, resamples), title)
    if figure in ("knn_alignment", "state_similarity", "activation_similarity"):
        by_group = summaries.metric_by_group(tables["states"], main_label)
        return charts.EVALUATION_FIGURES[figure](by_group, title)
    if figure == "specificity":
        return charts.specificity_chart(summaries.specificity_summary(tables["specificity"]), title)
    if figure == "detector_agreement":
        agreement = tables["agreement"].filter(pl.col("top_n_label") == str(main_label))
        return charts.detector_agreement_chart(agreement, title)
    if figure == "attention_example":
        first_language = tables["attention_example"]["language"][0]
        example = tables["attention_example"].filter(pl.col("language") == first_language)
        return charts.attention_example_chart(example, f"{title} ({first_language}, first test sentence)")
    if figure == "dose_response":
        table = summaries.dose_response(tables["states"], tables.get("qa"), knn_metric)
        return charts.dose_response_chart(table, knn_metric, title)
    (table,) = tables.values()
    return charts.EVALUATION_FIGURES[figure](table, title)

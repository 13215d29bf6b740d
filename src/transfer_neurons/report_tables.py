"""The tables the report quotes, one function each, from one model's result files."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import polars as pl

from transfer_neurons import summaries


def _read(paths: Sequence[str]) -> pl.DataFrame:
    return pl.concat([pl.read_parquet(path) for path in paths], how="diagonal_relaxed")


def detection_summary(neurons: pl.DataFrame, main_label: str) -> pl.DataFrame:
    """Per detector, language and type: N and where the top-N neurons sit."""
    return (
        neurons.filter(pl.col("top_n_label") == str(main_label))
        .group_by("detector", "language", "type")
        .agg(
            pl.col("top_n").first(),
            pl.col("layer").median().alias("median_layer"),
            pl.col("layer").min().alias("min_layer"),
            pl.col("layer").max().alias("max_layer"),
        )
        .sort("detector", "language", "type")
    )


def alignment_summary(by_group: pl.DataFrame, knn_metric: str) -> pl.DataFrame:
    metrics = [knn_metric] + [f"{kind}_cosine_{pairs}" for kind in ("state", "activation")
                              for pairs in ("parallel", "non_parallel")]  # fmt: skip
    table = summaries.layer_mean(by_group, metrics[0])
    for metric in metrics[1:]:
        table = table.join(summaries.layer_mean(by_group, metric), on=["model", "language", "group"])
    return table


def language_space_summary(similarity: pl.DataFrame) -> pl.DataFrame:
    """Per condition: mean cosine between different languages' centroids at the first, middle and last layer."""
    cross = (
        similarity.filter(pl.col("language_a") != pl.col("language_b"))
        .group_by("condition", "layer")
        .agg(pl.col("cosine").mean())
        .sort("condition", "layer")
    )
    last = cross["layer"].max()
    rows = []
    for (condition,), part in cross.group_by("condition", maintain_order=True):
        values = dict(zip(part["layer"], part["cosine"], strict=True))
        rows.append({"condition": condition, "first_layer": values[0], "middle_layer": values[last // 2],
                     "last_layer": values[last], "peak_layer": max(values, key=values.get)})  # fmt: skip
    return pl.DataFrame(rows)


def attention_summary(shifts: pl.DataFrame) -> pl.DataFrame:
    """Per condition: mean and max JS divergence from the normal attention, and the layer of the max."""
    frame = shifts.filter(pl.col("condition") != "normal")
    by_layer = frame.group_by("condition", "layer").agg(pl.col("js_divergence").mean())
    peak = by_layer.sort("js_divergence", descending=True).group_by("condition").first().rename({"layer": "max_layer"})
    overall = frame.group_by("condition").agg(
        pl.col("js_divergence").mean().alias("mean_js"), pl.col("js_divergence").max().alias("max_js")
    )
    return overall.join(peak.select("condition", "max_layer"), on="condition").sort("condition")


def agreement_summary(agreement: pl.DataFrame, main_label: str) -> pl.DataFrame:
    return (
        agreement.filter(pl.col("top_n_label") == str(main_label))
        .group_by("type")
        .agg((pl.col("shared").sum() / pl.col("n_centroid").sum()).alias("shared_share"))
        .sort("type")
    )


def all_tables(results: Mapping[str, Sequence[str]], *, main_label: str, knn_metric: str, resamples: int):
    """Every report table of one model, by name."""
    by_group = summaries.metric_by_group(_read(results["states"]), main_label)
    answers = _read(results["qa"])
    tables = {
        "detection_summary": detection_summary(_read(results["neurons"]), main_label),
        "qa_summary": summaries.qa_summary(answers, main_label, resamples),
        "alignment_summary": alignment_summary(by_group, knn_metric),
        "language_space_summary": language_space_summary(_read(results["language_space"])),
        "language_pca": _read(results["language_pca"]),
        "specificity_summary": summaries.specificity_summary(_read(results["specificity"])),
        "attention_summary": attention_summary(_read(results["attention"])),
        "dose_summary": summaries.dose_response(_read(results["states"]), answers, knn_metric),
    }
    if results.get("agreement"):
        tables["agreement_summary"] = agreement_summary(_read(results["agreement"]), main_label)
    return tables

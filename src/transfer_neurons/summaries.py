"""Summaries of the evaluation tables: the numbers figures and the report quote.

Conditions are grouped without their seed (``random_type1_s0`` -> ``random_type1``) so
that baselines are reported as the mean over seeds with their spread.
"""

from __future__ import annotations

import polars as pl

from transfer_neurons.qa import bootstrap_mean_ci

GROUP_ORDER = ["normal", "type1", "type2", "random_type1", "random_type2", "layer_matched_type1", "layer_matched_type2"]


def with_group(frame: pl.DataFrame) -> pl.DataFrame:
    """Add ``group``: kind and type without seed or N suffix (``normal``, ``type1``, ``random_type1``...)."""
    return frame.with_columns(
        pl.when(pl.col("kind") == "normal")
        .then(pl.lit("normal"))
        .when(pl.col("kind") == "transfer")
        .then(pl.col("neuron_type"))
        .otherwise(pl.col("kind") + "_" + pl.col("neuron_type"))
        .alias("group")
    )


def main_conditions(frame: pl.DataFrame, main_label: str) -> pl.DataFrame:
    """Rows of the normal condition and of the main N (not the dose-response sweep)."""
    return frame.filter((pl.col("kind") == "normal") | (pl.col("top_n_label") == str(main_label)))


def qa_summary(answers: pl.DataFrame, main_label: str, resamples: int) -> pl.DataFrame:
    """Per language and group: mean F1 with a bootstrap 95 % CI over questions; baselines are
    averaged over seeds per question first. Transfer groups also get the paired difference to
    the random baseline of their type, with its CI.
    """
    grouped = with_group(main_conditions(answers, main_label))
    per_question = grouped.group_by("model", "language", "group", "example_id").agg(
        pl.col("f1").mean(), pl.col("seed").n_unique().alias("n_seeds")
    )
    seed_spread = (
        grouped.group_by("model", "language", "group", "condition")
        .agg(pl.col("f1").mean().alias("seed_f1"))
        .group_by("model", "language", "group")
        .agg(pl.col("seed_f1").min().alias("seed_min"), pl.col("seed_f1").max().alias("seed_max"))
    )
    rows = []
    for (model, lang, group), part in per_question.group_by("model", "language", "group", maintain_order=True):
        part = part.sort("example_id")
        mean, low, high = bootstrap_mean_ci(part["f1"].to_numpy(), resamples)
        row = {"model": model, "language": lang, "group": group, "f1": mean, "ci_low": low, "ci_high": high,
               "n_questions": part.height, "n_seeds": int(part["n_seeds"].max())}  # fmt: skip
        baseline = per_question.filter(
            (pl.col("language") == lang) & (pl.col("model") == model) & (pl.col("group") == f"random_{group}")
        ).sort("example_id")
        if group in ("type1", "type2") and baseline.height == part.height:
            difference = part["f1"].to_numpy() - baseline["f1"].to_numpy()
            row["diff_vs_random"], row["diff_ci_low"], row["diff_ci_high"] = bootstrap_mean_ci(difference, resamples)
        rows.append(row)
    summary = pl.DataFrame(rows, infer_schema_length=None)
    return summary.join(seed_spread, on=["model", "language", "group"], how="left").sort(
        "model", "language", pl.col("group").replace_strict(GROUP_ORDER, list(range(len(GROUP_ORDER))), default=99)
    )


def metric_by_group(metrics: pl.DataFrame, main_label: str) -> pl.DataFrame:
    """Per language, group, layer and metric: mean over seeds with min and max."""
    grouped = with_group(main_conditions(metrics, main_label))
    return (
        grouped.group_by("model", "language", "group", "layer", "metric")
        .agg(
            pl.col("value").mean().alias("mean"), pl.col("value").min().alias("min"), pl.col("value").max().alias("max")
        )
        .sort("model", "language", "group", "metric", "layer")
    )


def layer_mean(frame: pl.DataFrame, metric: str) -> pl.DataFrame:
    """Mean over layers of one metric per language and group (from ``metric_by_group``)."""
    return (
        frame.filter(pl.col("metric") == metric)
        .group_by("model", "language", "group")
        .agg(pl.col("mean").mean().alias(metric))
        .sort("model", "language", "group")
    )


def specificity_summary(table: pl.DataFrame) -> pl.DataFrame:
    """Share of top-N neurons with eta^2 > 0.1 and p < 0.05, and with eta^2 > 0.25, per language and type."""
    return (
        table.group_by("model", "language", "type")
        .agg(
            pl.len().alias("neurons"),
            ((pl.col("eta_squared") > 0.1) & (pl.col("p_value") < 0.05)).mean().alias("share_eta_0.1_p_0.05"),
            (pl.col("eta_squared") > 0.25).mean().alias("share_eta_0.25"),
            pl.col("eta_squared").median().alias("median_eta_squared"),
        )
        .sort("model", "language", "type")
    )


def dose_response(metrics: pl.DataFrame, answers: pl.DataFrame | None, knn_metric: str) -> pl.DataFrame:
    """Per language, type, N and kind (transfer/random): layer-mean k-NN alignment and QA F1."""
    swept = metrics.filter(pl.col("kind").is_in(["transfer", "random"]) & (pl.col("metric") == knn_metric))
    knn = swept.group_by("model", "language", "neuron_type", "top_n", "kind").agg(
        pl.col("value").mean().alias(knn_metric)
    )
    if answers is None:
        return knn.sort("model", "language", "neuron_type", "kind", "top_n")
    qa = (
        answers.filter(pl.col("kind").is_in(["transfer", "random"]))
        .group_by("model", "language", "neuron_type", "top_n", "kind")
        .agg(pl.col("f1").mean().alias("qa_f1"))
    )
    return knn.join(qa, on=["model", "language", "neuron_type", "top_n", "kind"], how="left").sort(
        "model", "language", "neuron_type", "kind", "top_n"
    )

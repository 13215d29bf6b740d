"""Summaries of the detection and evaluation tables: the numbers that figures draw and the report quotes.

Conditions are grouped without their seed (``random_type1_s0`` -> ``random_type1``) so that
baselines are reported as the mean over seeds with their spread.
"""

from __future__ import annotations

from transfer_neurons.evaluation.statistics import bootstrap_mean_ci
from transfer_neurons.lazy import lazy_import
from transfer_neurons.names import (
    ACTIVATION_COSINE,
    BASELINE_KINDS,
    GROUP_ORDER,
    NEURON_TYPES,
    NORMAL,
    PAIRINGS,
    STATE_COSINE,
    ConditionKind,
    condition_group,
    cosine_metric,
)

pl = lazy_import("polars")  # the Snakefile reads the registries that refer to these functions

PER_LAYER_TOP_K = 10  # the score profile shows the mean of each layer's best neurons
DOSE_KINDS = [ConditionKind.TRANSFER.value, ConditionKind.RANDOM.value]  # the kinds the N sweep runs


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


def with_group(frame: pl.DataFrame) -> pl.DataFrame:
    """Add ``group``: kind and type without seed or N suffix (``normal``, ``type1``, ``random_type1``...)."""
    return frame.with_columns(
        pl.when(pl.col("kind") == ConditionKind.NORMAL.value)
        .then(pl.lit(NORMAL))
        .when(pl.col("kind") == ConditionKind.TRANSFER.value)
        .then(pl.col("neuron_type"))
        .otherwise(pl.col("kind") + "_" + pl.col("neuron_type"))
        .alias("group")
    )


def main_conditions(frame: pl.DataFrame, main_label: str) -> pl.DataFrame:
    """Rows of the normal condition and of the main N (not the dose-response sweep)."""
    return frame.filter((pl.col("kind") == NORMAL) | (pl.col("top_n_label") == str(main_label)))


QA_KEYS = ["model", "language", "positions"]


def group_order():
    """A sort expression that puts condition groups in ``GROUP_ORDER`` (others last)."""
    return pl.col("group").replace_strict(GROUP_ORDER, list(range(len(GROUP_ORDER))), default=99)


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
        rows.append({**dict(zip([*QA_KEYS, "group"], keys, strict=True)), "mkqa_f1": mean, "ci_low": low,
                     "ci_high": high, "mkqa_em": part["em"].mean(), "n_questions": part.height,
                     "n_seeds": int(part["n_seeds"].max())})  # fmt: skip
    summary = pl.DataFrame(rows, infer_schema_length=None)
    return summary.join(seed_spread, on=[*QA_KEYS, "group"], how="left").sort(*QA_KEYS, group_order())


def paired_contrasts(per_unit: pl.DataFrame, keys: list[str], unit: str, value: str, resamples: int) -> pl.DataFrame:
    """Each type's transfer neurons against each baseline of the same type, paired by ``unit``.

    ``per_unit`` has ``keys``, ``group`` (``type1``, ``random_type1``, ...), ``unit`` and ``value``.
    Per key and pair of groups: both means, the mean difference (transfer minus baseline) and its
    bootstrap 95 % CI over units. A difference whose CI excludes 0 is one the baseline cannot explain.
    """
    rows = []
    for key_values, part in per_unit.group_by(*keys, maintain_order=True):
        by_group = {group: rows_.sort(unit) for (group,), rows_ in part.group_by("group")}
        for neuron_type in NEURON_TYPES:
            transfer = by_group.get(neuron_type)
            if transfer is None:
                continue
            for baseline_kind in BASELINE_KINDS:
                baseline = by_group.get(condition_group(baseline_kind, neuron_type))
                if baseline is None or baseline[unit].to_list() != transfer[unit].to_list():
                    continue
                difference = transfer[value].to_numpy() - baseline[value].to_numpy()
                mean, low, high = bootstrap_mean_ci(difference, resamples)
                rows.append({**dict(zip(keys, key_values, strict=True)), "neuron_type": neuron_type,
                             "baseline": baseline_kind, "transfer": float(transfer[value].mean()),
                             "baseline_value": float(baseline[value].mean()), "difference": mean, "ci_low": low,
                             "ci_high": high, "n": transfer.height})  # fmt: skip
    return pl.DataFrame(rows, infer_schema_length=None)


def qa_contrasts(answers: pl.DataFrame, main_label: str, resamples: int) -> pl.DataFrame:
    """MKQA F1 of transfer neurons minus each baseline's, paired by question, with its CI."""
    return paired_contrasts(per_question_scores(answers, main_label), QA_KEYS, "example_id", "f1", resamples)


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


def alignment_summary(by_group: pl.DataFrame, knn_metric: str) -> pl.DataFrame:
    metrics = [knn_metric] + [
        cosine_metric(quantity, pairing) for quantity in (STATE_COSINE, ACTIVATION_COSINE) for pairing in PAIRINGS
    ]
    table = layer_mean(by_group, metrics[0])
    for metric in metrics[1:]:
        table = table.join(layer_mean(by_group, metric), on=["model", "language", "group"])
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


def specificity_summary(table: pl.DataFrame) -> pl.DataFrame:
    """Share of top-N neurons with eta^2 > 0.1 and p < 0.05, and with eta^2 > 0.25, per language and type."""
    return (
        table.group_by("model", "language", "neuron_type")
        .agg(
            pl.len().alias("neurons"),
            ((pl.col("eta_squared") > 0.1) & (pl.col("p_value") < 0.05)).mean().alias("share_eta_0.1_p_0.05"),
            (pl.col("eta_squared") > 0.25).mean().alias("share_eta_0.25"),
            pl.col("eta_squared").median().alias("median_eta_squared"),
        )
        .sort("model", "language", "neuron_type")
    )


def attention_summary(shifts: pl.DataFrame) -> pl.DataFrame:
    """Per condition: mean and max JS divergence from the normal attention, and the layer of the max."""
    frame = shifts.filter(pl.col("condition") != NORMAL)
    by_layer = frame.group_by("condition", "layer").agg(pl.col("js_divergence").mean())
    peak = by_layer.sort("js_divergence", descending=True).group_by("condition").first().rename({"layer": "max_layer"})
    overall = frame.group_by("condition").agg(
        pl.col("js_divergence").mean().alias("mean_js"), pl.col("js_divergence").max().alias("max_js")
    )
    return overall.join(peak.select("condition", "max_layer"), on="condition").sort("condition")


def dose_response(metrics: pl.DataFrame, answers: pl.DataFrame | None, knn_metric: str) -> pl.DataFrame:
    """Per language, type, N and kind (transfer/random): layer-mean k-NN alignment and mean MKQA F1
    in each QA position mode (``mkqa_f1_{positions}``)."""
    keys = ["model", "language", "neuron_type", "top_n", "kind"]
    swept = metrics.filter(pl.col("kind").is_in(DOSE_KINDS) & (pl.col("metric") == knn_metric))
    knn = swept.group_by(*keys).agg(pl.col("value").mean().alias(knn_metric))
    if answers is None:
        return knn.sort("model", "language", "neuron_type", "kind", "top_n")
    qa = (
        answers.filter(pl.col("kind").is_in(DOSE_KINDS))
        .group_by(*keys, "positions")
        .agg(pl.col("f1").mean())
        .pivot(on="positions", index=keys, values="f1")
    )
    qa = qa.rename({column: f"mkqa_f1_{column}" for column in qa.columns if column not in keys})
    return knn.join(qa, on=keys, how="left").sort("model", "language", "neuron_type", "kind", "top_n")


def agreement_summary(agreement: pl.DataFrame, main_label: str) -> pl.DataFrame:
    """Per other detector and type: the share of the reference detector's top-N it also finds."""
    return (
        agreement.filter(pl.col("top_n_label") == str(main_label))
        .group_by("reference", "detector", "neuron_type")
        .agg((pl.col("shared").sum() / pl.col("n_reference").sum()).alias("shared_share"))
        .sort("reference", "detector", "neuron_type")
    )


def data_summary(dropped: pl.DataFrame, detection_pairs: pl.DataFrame) -> pl.DataFrame:
    """How many pairs each step kept or dropped, per language and split (tidy: language, split, step, pairs).

    ``dropped`` lists the pairs ``corpus.duplicates`` dropped (before splitting, so split "all");
    ``detection_pairs`` every pair of each split with ``kept`` (false: over ``runtime.max_tokens``).
    """
    duplicates = (
        dropped.group_by("language", "reason")
        .len("pairs")
        .select("language", pl.lit("all").alias("split"), ("dropped: " + pl.col("reason")).alias("step"), "pairs")
    )
    per_split = detection_pairs.group_by("language", "split").agg(
        pl.len().alias("in split"),
        (~pl.col("kept")).sum().alias("dropped: over runtime.max_tokens"),
        pl.col("kept").sum().alias("used for detection"),
    )
    steps = per_split.unpivot(index=["language", "split"], variable_name="step", value_name="pairs")
    order = ["in split", "dropped: over runtime.max_tokens", "used for detection"]
    return (
        pl.concat([duplicates.cast({"pairs": pl.Int64}), steps.cast({"pairs": pl.Int64})])
        .with_columns(pl.col("step").replace_strict(order, range(len(order)), default=-1).alias("order"))
        .sort("language", "split", "order", "step")
        .drop("order")
    )

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
    """Share of top-N neurons with eta^2 > 0.1 and p < 0.05, and with eta^2 > 0.25, per language, type and
    grouping (the language against the rest, or its family against the rest)."""
    return (
        table.group_by("model", "language", "group", "grouping", "neuron_type")
        .agg(
            pl.len().alias("neurons"),
            ((pl.col("eta_squared") > 0.1) & (pl.col("p_value") < 0.05)).mean().alias("share_eta_0.1_p_0.05"),
            (pl.col("eta_squared") > 0.25).mean().alias("share_eta_0.25"),
            pl.col("eta_squared").median().alias("median_eta_squared"),
        )
        .sort("model", "language", "grouping", "neuron_type")
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


def seed_averaged(frame: pl.DataFrame, main_label: str, keys: list[str], unit: str, values: list[str]):
    """Per key, condition group and unit: the values averaged over a baseline's seeds."""
    grouped = with_group(main_conditions(frame, main_label))
    return grouped.group_by(*keys, "group", unit).agg(pl.col(value).mean() for value in values)


def alignment_contrasts(pairs: pl.DataFrame, main_label: str, resamples: int) -> pl.DataFrame:
    """Layer-mean mutual k-NN share and parallel-pair cosine of transfer neurons minus each
    baseline's, paired by test pair, with CIs (one row per measure)."""
    measures = ["knn_share", "parallel_cosine"]
    per_pair = seed_averaged(pairs, main_label, ["model", "language"], "pair", measures)
    frames = [
        paired_contrasts(per_pair, ["model", "language"], "pair", measure, resamples).with_columns(
            pl.lit(measure).alias("measure")
        )
        for measure in measures
    ]
    return pl.concat([frame for frame in frames if frame.height], how="diagonal")


def attention_contrasts(sentences: pl.DataFrame, main_label: str, resamples: int) -> pl.DataFrame:
    """JS divergence of the last token's attention from normal (mean over layers and heads) under
    transfer neurons minus each baseline's, paired by sentence."""
    per_sentence = seed_averaged(sentences, main_label, ["model", "language"], "sentence", ["js_divergence"])
    return paired_contrasts(per_sentence, ["model", "language"], "sentence", "js_divergence", resamples)


LOSS_KEYS = ["model", "language", "text_language"]


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
    """Loss under transfer neurons minus under each baseline, paired by sentence, per text language."""
    per_sentence = seed_averaged(losses, main_label, LOSS_KEYS, "sentence", ["loss"])
    return paired_contrasts(per_sentence, LOSS_KEYS, "sentence", "loss", resamples)


def baseline_contrasts(
    pairs: pl.DataFrame, answers: pl.DataFrame, sentences: pl.DataFrame, losses: pl.DataFrame | None,
    main_label: str, resamples: int,
) -> pl.DataFrame:  # fmt: skip
    """Every analysis's transfer-minus-baseline contrast in one table, one ``analysis`` per measure.

    The loss contrast is on the language's own text (the one transfer neurons should hurt most).
    """
    qa = qa_contrasts(answers, main_label, resamples)
    parts = [
        alignment_contrasts(pairs, main_label, resamples).with_columns(
            ("alignment: " + pl.col("measure")).alias("analysis")
        ),
        qa.with_columns(("MKQA F1 (" + pl.col("positions") + ")").alias("analysis")),
        attention_contrasts(sentences, main_label, resamples).with_columns(pl.lit("attention JS").alias("analysis")),
    ]
    if losses is not None:
        own = loss_contrasts(losses, main_label, resamples).filter(pl.col("text_language") == pl.col("language"))
        parts.append(own.with_columns(pl.lit("loss on own text").alias("analysis")))
    columns = ["model", "language", "analysis", "neuron_type", "baseline", "transfer", "baseline_value", "difference",
               "ci_low", "ci_high", "n"]  # fmt: skip
    return pl.concat([part.select(columns) for part in parts if part.height]).sort("model", "language", "analysis")


def magnitude_summary(magnitudes: pl.DataFrame, conditions: pl.DataFrame, main_label: str) -> pl.DataFrame:
    """Where each set's neurons sit among their layers' writers: per language, condition group and
    type, the median percentile and the median ratio of magnitude to the layer's median magnitude."""
    layer_median = magnitudes.group_by("model", "language", "layer").agg(pl.col("magnitude").median().alias("median"))
    sized = magnitudes.join(layer_median, on=["model", "language", "layer"]).with_columns(
        (pl.col("magnitude") / pl.col("median")).alias("ratio_to_layer_median")
    )
    sets = with_group(main_conditions(conditions.filter(pl.col("layer").is_not_null()), main_label))
    return (
        sets.join(sized, on=["model", "language", "layer", "neuron"])
        .group_by("model", "language", "group")
        .agg(
            pl.len().alias("neurons"),
            pl.col("percentile").median().alias("median_percentile"),
            pl.col("ratio_to_layer_median").median().alias("median_ratio_to_layer_median"),
        )
        .sort("model", "language", group_order())
    )


def lape_summary(lape: pl.DataFrame, overlap: pl.DataFrame) -> pl.DataFrame:
    """Per language: how many LAPE neurons and in which layers; per type, their overlap with the
    transfer neurons over all layers, its chance expectation and hypergeometric p."""
    from scipy import stats

    sizes = lape.group_by("model", "language").agg(
        pl.len().alias("lape_neurons"), pl.col("layer").median().alias("median_layer")
    )
    totals = overlap.group_by("model", "language", "neuron_type").agg(
        pl.col("overlap").sum(),
        pl.col("n_transfer").sum(),
        pl.col("expected").sum().alias("expected_by_layer"),
        (pl.col("d_mlp") * pl.col("n_layers")).first().alias("population"),
    )
    table = totals.join(sizes, on=["model", "language"], how="left").with_columns(pl.col("lape_neurons").fill_null(0))
    p_values = [
        float(stats.hypergeom.sf(row["overlap"] - 1, row["population"], row["lape_neurons"], row["n_transfer"]))
        for row in table.iter_rows(named=True)
    ]
    return table.with_columns(pl.Series("p_value", p_values)).sort("model", "language", "neuron_type")


def harness_summary(results: pl.DataFrame) -> pl.DataFrame:
    """Per language, task, metric and condition group: the score (mean over a baseline's seeds, with
    their min and max) and the harness's stderr (mean over seeds)."""
    grouped = with_group(results)
    return (
        grouped.group_by("model", "language", "task", "metric", "filter", "group")
        .agg(
            pl.col("value").mean(),
            pl.col("value").min().alias("seed_min"),
            pl.col("value").max().alias("seed_max"),
            pl.col("stderr").mean(),
            pl.col("seed").n_unique().alias("n_seeds"),
            pl.col("n_samples").first(),
        )
        .sort("model", "language", "task", "metric", "filter", group_order())
    )


def patching_summary(patching: pl.DataFrame) -> pl.DataFrame:
    """Per language, neuron set, source, scope and patched layer: the recovery of the layer-mean
    alignment, ``(patched - corrupted) / (clean - corrupted)`` of each metric averaged over layers."""
    runs = patching.filter(pl.col("source").is_not_null())
    keys = ["model", "language", "neuron_set", "source", "scope", "patched_layer", "metric"]
    means = runs.group_by(keys).agg(pl.col("value").mean(), pl.col("clean").mean(), pl.col("corrupted").mean())
    gap = pl.col("clean") - pl.col("corrupted")
    # Where deactivation changed nothing there is nothing to recover: recovery is undefined (null).
    recovery = pl.when(gap.abs() > 1e-9).then((pl.col("value") - pl.col("corrupted")) / gap).otherwise(None)
    return means.with_columns(recovery.alias("recovery")).sort(keys)


def loss_selectivity(losses: pl.DataFrame, main_label: str, resamples: int, pivot: str) -> pl.DataFrame:
    """Per language and condition group: how much more the loss of the language's own text rises than
    the pivot's (English), the two sides of the same pairs paired, with a bootstrap 95 % CI.
    Positive: the damage is selective for the language; near 0: it hurts both alike."""
    changes = loss_changes(losses, main_label)
    keys = ["model", "language", "group", "sentence"]
    own = changes.filter(pl.col("text_language") == pl.col("language")).select(*keys, own="change")
    english = changes.filter(pl.col("text_language") == pivot).select(*keys, english="change")
    paired = own.join(english, on=keys).sort(keys)
    rows = []
    for (model, lang, group), part in paired.group_by("model", "language", "group", maintain_order=True):
        difference, low, high = bootstrap_mean_ci((part["own"] - part["english"]).to_numpy(), resamples)
        rows.append({"model": model, "language": lang, "group": group, "own_change": part["own"].mean(),
                     "english_change": part["english"].mean(), "difference": difference, "ci_low": low,
                     "ci_high": high, "n_pairs": part.height})  # fmt: skip
    return pl.DataFrame(rows, infer_schema_length=None).sort("model", "language", group_order())

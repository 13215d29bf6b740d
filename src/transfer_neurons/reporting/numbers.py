"""This run's key numbers under each figure, as a small table built from the summary tables.

Each function takes the summary tables of one model (``reporting.tables``) and the figure's
context and returns a few rows: the numbers the figure shows, with their CIs where there are any.
The figure registry names which function a figure uses.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from transfer_neurons.lazy import lazy_import
from transfer_neurons.names import ACTIVATION_COSINE, GROUP_ORDER, NORMAL, STATE_COSINE, cosine_metric

if TYPE_CHECKING:
    from transfer_neurons.reporting.figures import FigureContext

pl = lazy_import("polars")  # the Snakefile reads the figure registry, which refers to these functions

Tables = Mapping[str, "pl.DataFrame"]  # the summary tables of one model, by name
# The groups a compact table shows, in this order (baselines of Type-1 only: the paper's contrast).
SHOWN_GROUPS = [NORMAL, "type1", "type2", "random_type1", "magnitude_matched_type1", "lape"]


def with_interval(value: str, low: str, high: str, digits: int = 3):
    """A string column ``value [low, high]``."""
    return pl.format(
        "{} [{}, {}]", *(pl.col(column).round(digits).cast(pl.String) for column in (value, low, high))
    ).alias(value)


def by_group(frame: pl.DataFrame, index: list[str], value: str, groups=SHOWN_GROUPS) -> pl.DataFrame:
    """Rows ``index``, one column per condition group in ``groups`` order (those present)."""
    present = [group for group in groups if group in set(frame["group"].to_list())]
    wide = frame.filter(pl.col("group").is_in(present)).pivot(on="group", index=index, values=value)
    return wide.select(*index, *present).sort(index)


def rounded(frame: pl.DataFrame, digits: int = 3) -> pl.DataFrame:
    return frame.with_columns(pl.col(pl.Float64).round(digits))


def detection_numbers(tables: Tables, context: FigureContext) -> pl.DataFrame:
    table = tables["detection_summary"].filter(pl.col("detector") == context.detector)
    return table.select("language", "neuron_type", "top_n", "median_layer", "min_layer", "max_layer")


def qa_numbers(tables: Tables, context: FigureContext) -> pl.DataFrame:
    summary = tables["qa_summary"].with_columns(with_interval("mkqa_f1", "ci_low", "ci_high"))
    return by_group(summary, ["language", "positions"], "mkqa_f1")


def knn_numbers(tables: Tables, context: FigureContext) -> pl.DataFrame:
    metric = context.settings.knn_metric
    return rounded(by_group(tables["alignment_summary"], ["language"], metric))


def _pair_numbers(tables: Tables, quantity: str) -> pl.DataFrame:
    table = tables["alignment_summary"].filter(pl.col("group").is_in([NORMAL, "type1"]))
    columns = [cosine_metric(quantity, pairing) for pairing in ("parallel", "non_parallel")]
    return rounded(table.select("language", "group", *columns).sort("language", "group"))


def state_numbers(tables: Tables, context: FigureContext) -> pl.DataFrame:
    return _pair_numbers(tables, STATE_COSINE)


def activation_numbers(tables: Tables, context: FigureContext) -> pl.DataFrame:
    return _pair_numbers(tables, ACTIVATION_COSINE)


def language_space_numbers(tables: Tables, context: FigureContext) -> pl.DataFrame:
    return rounded(tables["language_space_summary"])


def pca_numbers(tables: Tables, context: FigureContext) -> pl.DataFrame:
    return tables["language_pca"].group_by("layer", "language").len("points").sort("layer", "language")


def specificity_numbers(tables: Tables, context: FigureContext) -> pl.DataFrame:
    table = tables["specificity_summary"]
    return rounded(
        table.select("language", "grouping", "neuron_type", "neurons", "share_eta_0.1_p_0.05", "share_eta_0.25")
    )


def attention_numbers(tables: Tables, context: FigureContext) -> pl.DataFrame:
    return rounded(tables["attention_summary"], 4)


def agreement_numbers(tables: Tables, context: FigureContext) -> pl.DataFrame:
    return rounded(tables["agreement_summary"])


def loss_numbers(tables: Tables, context: FigureContext) -> pl.DataFrame:
    summary = tables["loss_summary"].filter(pl.col("group") != NORMAL)
    summary = summary.with_columns(with_interval("change", "ci_low", "ci_high"))
    return by_group(
        summary, ["language", "text_language"], "change", [group for group in SHOWN_GROUPS if group != NORMAL]
    )


def contrast_numbers(tables: Tables, context: FigureContext) -> pl.DataFrame:
    contrasts = tables["baseline_contrasts"].filter(pl.col("neuron_type") == "type1")
    contrasts = contrasts.with_columns(with_interval("difference", "ci_low", "ci_high", 4))
    wide = contrasts.pivot(on="baseline", index=["language", "analysis"], values="difference")
    return wide.sort("language", "analysis")


def lape_numbers(tables: Tables, context: FigureContext) -> pl.DataFrame:
    table = tables["lape_summary"]
    return rounded(table.select("language", "neuron_type", "lape_neurons", "n_transfer", "overlap",
                                "expected_by_layer", "p_value"), 4)  # fmt: skip


def harness_numbers(tables: Tables, context: FigureContext) -> pl.DataFrame:
    summary = tables["harness_summary"].filter(pl.col("metric") == "acc")
    return rounded(by_group(summary, ["language", "task"], "value", GROUP_ORDER))


def patching_numbers(tables: Tables, context: FigureContext) -> pl.DataFrame:
    summary = tables["patching_summary"].filter((pl.col("metric") == "mutual_knn") & (pl.col("scope") == "cumulative"))
    last = summary.filter(pl.col("patched_layer") == pl.col("patched_layer").max().over("language", "neuron_set"))
    wide = last.pivot(on="source", index=["language", "neuron_set"], values="recovery")
    return rounded(wide.sort("language", "neuron_set"))


def dose_numbers(tables: Tables, context: FigureContext) -> pl.DataFrame:
    return rounded(tables["dose_summary"].drop("model"))

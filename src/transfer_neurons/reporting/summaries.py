"""What every analysis's summaries share: condition groups, the main N, paired contrasts against baselines.

Conditions are grouped without their seed (``random_type1_s0`` -> ``random_type1``) so that
baselines are reported as the mean over seeds with their spread. Each analysis's own summaries live
in its module under ``reporting.analyses``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from transfer_neurons.evaluation.statistics import bootstrap_mean_ci
from transfer_neurons.lazy import lazy_import
from transfer_neurons.names import BASELINE_KINDS, GROUP_ORDER, NEURON_TYPES, condition_group

if TYPE_CHECKING:
    import polars as pl
else:
    pl = lazy_import("polars")  # the Snakefile reads the registries that refer to these functions


def with_group(frame: pl.DataFrame) -> pl.DataFrame:
    """Add ``group``: the condition's name without seed or N (``normal``, ``type1``, ``random_type1``...),
    as ``names.condition_group`` builds it from ``kind`` and ``neuron_type``."""
    pairs = frame.select("kind", "neuron_type").unique().iter_rows()
    groups = {_group_key(kind, neuron_type): condition_group(kind, neuron_type) for kind, neuron_type in pairs}
    key = pl.col("kind") + "|" + pl.col("neuron_type").fill_null("")
    return frame.with_columns(key.replace_strict(groups, return_dtype=pl.String).alias("group"))


def _group_key(kind: str, neuron_type: str | None) -> str:
    return f"{kind}|{neuron_type or ''}"


def main_conditions(frame: pl.DataFrame, main_label: str) -> pl.DataFrame:
    """Rows of the main N and of the conditions without an N (normal, LAPE): not the dose-response sweep."""
    return frame.filter(pl.col("top_n_label").is_null() | (pl.col("top_n_label") == str(main_label)))


def group_order() -> pl.Expr:
    """A sort expression that puts condition groups in ``GROUP_ORDER`` (others last)."""
    return pl.col("group").replace_strict(GROUP_ORDER, list(range(len(GROUP_ORDER))), default=99)


def seed_averaged(frame: pl.DataFrame, main_label: str, keys: list[str], unit: str, values: list[str]) -> pl.DataFrame:
    """Per key, condition group and unit: the values averaged over a baseline's seeds."""
    grouped = with_group(main_conditions(frame, main_label))
    return grouped.group_by(*keys, "group", unit).agg(pl.col(value).mean() for value in values)


CONTRAST_COLUMNS = ["model", "language", "analysis", "neuron_type", "baseline", "transfer", "baseline_value",
                    "difference", "ci_low", "ci_high", "n"]  # fmt: skip


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
                # polars types a Series aggregate as any Python value (here a number): hence the ignores.
                rows.append({**dict(zip(keys, key_values, strict=True)), "neuron_type": neuron_type,
                             "baseline": baseline_kind, "transfer": float(transfer[value].mean()),  # type: ignore[arg-type]
                             "baseline_value": float(baseline[value].mean()), "difference": mean, "ci_low": low,  # type: ignore[arg-type]
                             "ci_high": high, "n": transfer.height})  # fmt: skip
    table = pl.DataFrame(rows, infer_schema_length=None)
    return table.sort(*keys, "neuron_type", "baseline") if table.height else table

"""What the key-numbers tables under the figures share: intervals as text, one column per group, rounding.

Each analysis's numbers function (in its module under ``reporting.analyses``) takes the summary
tables of one model and the figure's context and returns a few rows: the numbers the figure shows,
with their CIs where there are any.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from transfer_neurons.lazy import lazy_import
from transfer_neurons.names import NORMAL, ConditionKind, NeuronType, condition_group

if TYPE_CHECKING:
    import polars as pl
else:
    pl = lazy_import("polars")  # the Snakefile reads the figure registry, which refers to these functions

# The groups a compact table shows, in this order (baselines of Type-1 only: the paper's contrast).
SHOWN_GROUPS = [
    NORMAL,
    *(condition_group(ConditionKind.TRANSFER, neuron_type) for neuron_type in NeuronType),
    *(condition_group(kind, NeuronType.TYPE1) for kind in (ConditionKind.RANDOM, ConditionKind.MAGNITUDE_MATCHED)),
    condition_group(ConditionKind.LAPE),
]


def with_interval(value: str, low: str, high: str, digits: int = 3) -> pl.Expr:
    """A string column ``value [low, high]``."""
    return pl.format(
        "{} [{}, {}]", *(pl.col(column).round(digits).cast(pl.String) for column in (value, low, high))
    ).alias(value)


def by_group(frame: pl.DataFrame, index: list[str], value: str, groups: Sequence[str] = SHOWN_GROUPS) -> pl.DataFrame:
    """Rows ``index``, one column per condition group in ``groups`` order (those present)."""
    present = [group for group in groups if group in set(frame["group"].to_list())]
    wide = frame.filter(pl.col("group").is_in(present)).pivot(on="group", index=index, values=value)
    return wide.select(*index, *present).sort(index)


def rounded(frame: pl.DataFrame, digits: int = 3) -> pl.DataFrame:
    return frame.with_columns(pl.col(pl.Float64).round(digits))

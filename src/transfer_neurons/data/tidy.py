"""Tidy tables: one row per observation, with the model, language and other labels as columns."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl


def labelled(frame: pl.DataFrame, **labels: str) -> pl.DataFrame:
    """Prepend constant label columns (model, language...) to a tidy table."""
    return frame.with_columns([pl.lit(value).alias(name) for name, value in labels.items()]).select(
        *labels, *frame.columns
    )


def read_tables(paths: Sequence[str | Path]) -> pl.DataFrame:
    """One table from several parquet files (one per language, say), columns aligned by name."""
    return pl.concat([pl.read_parquet(path) for path in paths], how="diagonal_relaxed")

"""Agreement between detectors: how many of one detector's top-N neurons another detector also finds.

The reference is the detector whose lists the evaluations use (``evaluation.detector``); every
other configured detector is compared with it, per language, top-N label, neuron type and layer.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import polars as pl

from transfer_neurons.data.tidy import labelled

GROUP = ["top_n_label", "neuron_type", "layer"]


def top_n_agreement(reference: pl.DataFrame, other: pl.DataFrame) -> pl.DataFrame:
    """Per top-N label, type and layer: neurons in the reference's lists, in the other's, and in both."""
    reference, other = (table.select(*GROUP, "neuron") for table in (reference, other))
    shared = reference.join(other, on=[*GROUP, "neuron"], how="inner").group_by(GROUP).len("shared")
    return (
        reference.group_by(GROUP)
        .len("n_reference")
        .join(other.group_by(GROUP).len("n_other"), on=GROUP, how="full", coalesce=True)
        .join(shared, on=GROUP, how="left")
        .fill_null(0)
    )


def run_detector_agreement(
    reference: str, top_lists: Mapping[str, Mapping[str, Path]], *, labels: dict
) -> pl.DataFrame:
    """``top_lists[detector][language]`` -> one row per other detector, language, label, type and layer."""
    frames = []
    for other, paths in top_lists.items():
        if other == reference:
            continue
        for lang, path in paths.items():
            counts = top_n_agreement(pl.read_parquet(top_lists[reference][lang]), pl.read_parquet(path))
            frames.append(counts.with_columns(pl.lit(other).alias("detector"), pl.lit(lang).alias("language")))
    table = pl.concat(frames).select("detector", "language", *GROUP, "n_reference", "n_other", "shared")
    return labelled(
        table.sort("detector", "language", *GROUP).with_columns(pl.lit(reference).alias("reference")), **labels
    )

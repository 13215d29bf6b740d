"""Agreement between detectors: how many top-N neurons two detectors share, per layer."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from transfer_neurons.data.tidy import labelled


def run_detector_agreement(top_by_detector: dict[str, dict[str, Path]], *, labels: dict) -> pl.DataFrame:
    """Per language, type, N and layer: how many top-N neurons the two detectors share."""
    (name_a, paths_a), (name_b, paths_b) = list(top_by_detector.items())[:2]
    frames = []
    for lang in paths_a:
        tables = [pl.read_parquet(paths_a[lang]), pl.read_parquet(paths_b[lang])]
        keys = ["top_n_label", "type", "layer", "neuron"]
        a, b = (table.select(keys) for table in tables)
        shared = a.join(b, on=keys, how="inner").group_by("top_n_label", "type", "layer").len("shared")
        counts_a = a.group_by("top_n_label", "type", "layer").len(f"n_{name_a}")
        counts_b = b.group_by("top_n_label", "type", "layer").len(f"n_{name_b}")
        merged = (
            counts_a.join(counts_b, on=["top_n_label", "type", "layer"], how="full", coalesce=True)
            .join(shared, on=["top_n_label", "type", "layer"], how="left")
            .fill_null(0)
            .with_columns(pl.lit(lang).alias("language"))
        )
        frames.append(merged)
    return labelled(pl.concat(frames).sort("language", "top_n_label", "type", "layer"), **labels)

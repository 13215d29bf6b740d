"""Agreement between detectors: how many of one detector's neurons another detector also finds.

The reference is the detector whose lists the evaluations use (``evaluation.detector``); every
other configured detector is compared with it, per language, top-N label, neuron type and layer.
Each language's LAPE neurons are compared with its transfer neurons the same way, with the chance
expectation of the overlap and its hypergeometric p-value.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import polars as pl
from scipy import stats

from transfer_neurons.data.tidy import labelled
from transfer_neurons.model.manifest import manifest_facts

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


def hypergeometric_overlap_p(overlap: int, population: int, first: int, second: int) -> float:
    """P(at least ``overlap`` shared) when ``first`` and ``second`` neurons are drawn at random from
    ``population``: how surprising the overlap of two sets in one layer is."""
    return float(stats.hypergeom.sf(overlap - 1, population, first, second))


def lape_overlap(
    lape: pl.DataFrame, top_lists: Mapping[str, pl.DataFrame], d_mlp: int, main_label: str
) -> pl.DataFrame:
    """Per language, neuron type and layer: the language's LAPE neurons, its top-N transfer neurons,
    how many are both, their Jaccard index and the hypergeometric p of that overlap."""
    rows = []
    for lang, top in top_lists.items():
        specific = lape.filter(pl.col("language") == lang)
        main = top.filter(pl.col("top_n_label") == str(main_label))
        for neuron_type in main["neuron_type"].unique(maintain_order=True).to_list():
            transfer = main.filter(pl.col("neuron_type") == neuron_type)
            layers = sorted(set(transfer["layer"].to_list()) | set(specific["layer"].to_list()))
            for layer in layers:
                a = set(specific.filter(pl.col("layer") == layer)["neuron"].to_list())
                b = set(transfer.filter(pl.col("layer") == layer)["neuron"].to_list())
                both = len(a & b)
                rows.append({"language": lang, "neuron_type": neuron_type, "layer": layer, "n_lape": len(a),
                             "n_transfer": len(b), "overlap": both, "jaccard": both / len(a | b),
                             "expected": len(a) * len(b) / d_mlp,
                             "p_value": hypergeometric_overlap_p(both, d_mlp, len(a), len(b))})  # fmt: skip
    return pl.DataFrame(rows, infer_schema_length=None)


def run_lape_overlap(
    lape: Path, top_lists: Mapping[str, Path], manifest: Path, *, main_label: str, labels: dict
) -> pl.DataFrame:
    """The ``lape_overlap`` rule."""
    tops = {lang: pl.read_parquet(path) for lang, path in top_lists.items()}
    facts = manifest_facts(manifest)
    overlap = lape_overlap(pl.read_parquet(lape), tops, facts["d_mlp"], main_label)
    # The layer's and the model's neuron counts: the populations the p-values are taken in.
    sizes = [pl.lit(facts["d_mlp"]).alias("d_mlp"), pl.lit(facts["n_layers"]).alias("n_layers")]
    return labelled(overlap.with_columns(sizes), **labels)

"""Which neurons are candidates of each type, how they rank, and the top-N lists.

Type-1 candidates sit in the first layers, Type-2 candidates in the rest (the paper's 20 of 32
layers); within its candidates, a type's neurons rank by descending score.
"""

from __future__ import annotations

import polars as pl

from transfer_neurons.names import NEURON_TYPES


def candidate_layers(n_layers: int, type1_fraction: float) -> dict[str, list[int]]:
    """Type-1 candidates are the first ``round(type1_fraction * n_layers)`` layers, Type-2 the rest.

    The paper's 20 of 32 layers is a fraction of 0.625.
    """
    if not 0 < type1_fraction < 1:
        raise ValueError(f"candidate_layers.type1_fraction must be in (0, 1), got {type1_fraction}")
    boundary = min(max(round(type1_fraction * n_layers), 1), n_layers - 1)
    return {"type1": list(range(boundary)), "type2": list(range(boundary, n_layers))}


# The paper's N = 1000 out of 20 x 14336 Type-1 candidate neurons (Llama-3-8B).
PAPER_FRACTION = 1000 / (20 * 14336)


def resolve_top_n(label: int | str, n_candidates: int) -> int:
    """An integer N, or ``paper_fraction``: the paper's share of candidates (at least 1)."""
    if label == "paper_fraction":
        return max(1, round(PAPER_FRACTION * n_candidates))
    if isinstance(label, int) and label > 0:
        return min(label, n_candidates)
    raise ValueError(f"top_n entries must be positive integers or 'paper_fraction', got {label!r}")


def rank_candidates(scores: pl.DataFrame, type1_fraction: float, n_layers: int) -> pl.DataFrame:
    """Mark candidate layers per type and rank candidates by descending score (1 = best)."""
    candidates = candidate_layers(n_layers, type1_fraction)
    flagged = pl.concat(
        [
            scores.filter(pl.col("neuron_type") == neuron_type).with_columns(
                pl.col("layer").is_in(layers).alias("candidate")
            )
            for neuron_type, layers in candidates.items()
        ]
    )
    ranked = flagged.with_columns(
        pl.when(pl.col("candidate"))
        .then(pl.col("score").rank(method="ordinal", descending=True).over(["neuron_type", "candidate"]))
        .otherwise(None)
        .cast(pl.Int32)
        .alias("rank")
    )
    return ranked.sort("neuron_type", "layer", "neuron")


def top_n_lists(ranked: pl.DataFrame, top_n_labels: list) -> pl.DataFrame:
    """One row per (top-N label, type, neuron in that top-N)."""
    frames = []
    for neuron_type in NEURON_TYPES:
        of_type = ranked.filter((pl.col("neuron_type") == neuron_type) & pl.col("candidate"))
        for label in top_n_labels:
            n = resolve_top_n(label, of_type.height)
            frames.append(
                of_type.filter(pl.col("rank") <= n)
                .sort("rank")
                .with_columns(pl.lit(str(label)).alias("top_n_label"), pl.lit(n, dtype=pl.Int32).alias("top_n"))
            )
    return pl.concat(frames).select("top_n_label", "top_n", "neuron_type", "layer", "neuron", "score", "rank")

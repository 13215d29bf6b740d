"""The detection stages as functions from files to files (what the Snakemake rules call)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import polars as pl
from tqdm import tqdm

from transfer_neurons.centroids import centroids_from_dumps, load_centroids, save_centroids
from transfer_neurons.corpus import sentences
from transfer_neurons.dumps import Dump, dump_activations
from transfer_neurons.models import load_model
from transfer_neurons.scoring import DETECTORS, candidate_layers, resolve_top_n

log = logging.getLogger(__name__)

NEURON_TYPES = ("type1", "type2")
SIDES = ("pivot", "target")


def dump_split(
    manifest: Path, corpus: Path, split: str, directory: Path, *, batch_size: int, max_tokens: int, device: str
) -> None:
    """Dump the English (``pivot``) and L2 (``target``) sentences of one split."""
    model, tokenizer, adapter = load_model(manifest, device)
    pairs = pl.read_parquet(corpus)
    for side in SIDES:
        texts = sentences(pairs, split, side)
        meta = dump_activations(
            model,
            tokenizer,
            adapter,
            texts,
            Path(directory) / side,
            batch_size=batch_size,
            max_tokens=max_tokens,
            description=f"{split}/{side}",
        )
        log.info(
            "%s/%s: %d sentences, %d truncated to %d tokens",
            split,
            side,
            meta["n_sentences"],
            meta["n_truncated"],
            max_tokens,
        )


def compute_centroids(train_dump: Path, output: Path) -> None:
    save_centroids(centroids_from_dumps(Path(train_dump) / "pivot", Path(train_dump) / "target"), output)


def score_layers(adapter, target_dump: Dump, centroids: dict[str, np.ndarray], detector: str) -> pl.DataFrame:
    """Score every neuron of every layer against both centroid types -> tidy table."""
    score = DETECTORS[detector]
    frames = []
    for layer in tqdm(range(target_dump.n_layers), desc=f"score ({detector})", unit="layer"):
        inputs = {
            "residual_pre_mlp": target_dump.layer("residual_pre_mlp", layer),
            "layer_output": target_dump.layer("layer_output", layer),
            "activations": target_dump.effective_activations(layer),
            "write_vectors": adapter.write_vectors(layer).cpu().numpy(),
        }
        # Both centroid types at once: they share the layer's moved norms.
        both = score({**inputs, "centroids": np.stack([centroids[kind][layer] for kind in NEURON_TYPES])})
        for neuron_type, values in zip(NEURON_TYPES, both, strict=True):
            frames.append(
                pl.DataFrame(
                    {
                        "type": neuron_type,
                        "layer": np.full(values.shape[0], layer, dtype=np.int32),
                        "neuron": np.arange(values.shape[0], dtype=np.int32),
                        "score": values,
                    }
                )
            )
    return pl.concat(frames)


def rank_candidates(scores: pl.DataFrame, type1_fraction: float, n_layers: int) -> pl.DataFrame:
    """Mark candidate layers per type and rank candidates by descending score (1 = best)."""
    candidates = candidate_layers(n_layers, type1_fraction)
    flagged = pl.concat(
        [
            scores.filter(pl.col("type") == neuron_type).with_columns(pl.col("layer").is_in(layers).alias("candidate"))
            for neuron_type, layers in candidates.items()
        ]
    )
    ranked = flagged.with_columns(
        pl.when(pl.col("candidate"))
        .then(pl.col("score").rank(method="ordinal", descending=True).over(["type", "candidate"]))
        .otherwise(None)
        .cast(pl.Int32)
        .alias("rank")
    )
    return ranked.sort("type", "layer", "neuron")


def top_n_lists(ranked: pl.DataFrame, top_n_labels: list) -> pl.DataFrame:
    """One row per (top-N label, type, neuron in that top-N)."""
    frames = []
    for neuron_type in NEURON_TYPES:
        of_type = ranked.filter((pl.col("type") == neuron_type) & pl.col("candidate"))
        for label in top_n_labels:
            n = resolve_top_n(label, of_type.height)
            frames.append(
                of_type.filter(pl.col("rank") <= n)
                .sort("rank")
                .with_columns(pl.lit(str(label)).alias("top_n_label"), pl.lit(n, dtype=pl.Int32).alias("top_n"))
            )
    return pl.concat(frames).select("top_n_label", "top_n", "type", "layer", "neuron", "score", "rank")


def score_neurons(
    manifest: Path,
    train_dump: Path,
    centroids_path: Path,
    *,
    detector: str,
    type1_fraction: float,
    top_n_labels: list,
    labels: dict[str, str],
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Return (full score table, top-N lists), both tagged with ``labels`` columns (model, language...)."""
    if detector not in DETECTORS:
        raise ValueError(f"unknown detector {detector!r}; choose one of {sorted(DETECTORS)}")
    _, _, adapter = load_model(manifest, device="cpu", with_tokenizer=False)  # only the write vectors are read
    target_dump = Dump(Path(train_dump) / "target")
    scores = score_layers(adapter, target_dump, load_centroids(centroids_path), detector)
    ranked = rank_candidates(scores, type1_fraction, target_dump.n_layers)
    tops = top_n_lists(ranked, top_n_labels)
    tag = [pl.lit(value).alias(name) for name, value in labels.items()]
    return ranked.with_columns(tag).select(*labels, *ranked.columns), tops.with_columns(tag).select(
        *labels, *tops.columns
    )

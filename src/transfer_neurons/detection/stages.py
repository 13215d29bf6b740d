"""The detection stages as functions from files to files (what the Snakemake rules call)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import polars as pl
from tqdm import tqdm

from transfer_neurons.data.dumps import Dump
from transfer_neurons.data.tidy import labelled
from transfer_neurons.detection import detectors
from transfer_neurons.detection.centroids import centroids_from_dumps, load_centroids, save_centroids
from transfer_neurons.detection.detectors import Detector, LayerInputs
from transfer_neurons.detection.ranking import rank_candidates, top_n_lists
from transfer_neurons.model.loading import load_model
from transfer_neurons.names import NEURON_TYPES, PIVOT_SIDE, TARGET_SIDE

log = logging.getLogger(__name__)


def compute_centroids(train_dump: Path, output: Path) -> None:
    save_centroids(centroids_from_dumps(Path(train_dump) / PIVOT_SIDE, Path(train_dump) / TARGET_SIDE), output)


def layer_inputs(adapter, target_dump: Dump, centroids: dict[str, np.ndarray], layer: int) -> LayerInputs:
    """One layer of the L2 training dump, with every centroid type of that layer."""
    return LayerInputs(
        residual_pre_mlp=target_dump.layer("residual_pre_mlp", layer),
        layer_output=target_dump.layer("layer_output", layer),
        effective_activations=target_dump.effective_activations(layer),
        write_vectors=adapter.write_vectors(layer).cpu().numpy(),
        centroids=np.stack([centroids[neuron_type][layer] for neuron_type in NEURON_TYPES]),
    )


def score_layers(adapter, target_dump: Dump, centroids: dict[str, np.ndarray], scorer: Detector) -> pl.DataFrame:
    """Score every neuron of every layer against both centroid types -> tidy table."""
    frames = []
    for layer in tqdm(range(target_dump.n_layers), desc=f"score ({scorer.name})", unit="layer"):
        # Both centroid types at once: they share the layer's moved norms.
        both = scorer.score(layer_inputs(adapter, target_dump, centroids, layer))
        for neuron_type, values in zip(NEURON_TYPES, both, strict=True):
            frames.append(
                pl.DataFrame(
                    {
                        "neuron_type": neuron_type,
                        "layer": np.full(values.shape[0], layer, dtype=np.int32),
                        "neuron": np.arange(values.shape[0], dtype=np.int32),
                        "score": values,
                    }
                )
            )
    return pl.concat(frames)


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
    scorer = detectors.detector(detector)  # an unknown name fails before the model loads
    adapter = load_model(manifest, device="cpu", with_tokenizer=False).adapter  # only the write vectors are read
    target_dump = Dump(Path(train_dump) / TARGET_SIDE)
    scores = score_layers(adapter, target_dump, load_centroids(centroids_path), scorer)
    ranked = rank_candidates(scores, type1_fraction, target_dump.n_layers)
    return labelled(ranked, **labels), labelled(top_n_lists(ranked, top_n_labels), **labels)

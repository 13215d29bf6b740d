"""How much each neuron writes: mean |effective activation| x |write vector| over the L2 training sentences.

The centroid score favours neurons that write a lot, so a fair baseline for the transfer neurons
draws neurons of the same size (``evaluation.conditions``: magnitude-matched sets), and the report
says where the transfer neurons sit among their layer's writers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from transfer_neurons.data.dumps import Dump
from transfer_neurons.data.tidy import labelled
from transfer_neurons.model.adapters import FamilyAdapter
from transfer_neurons.model.loading import load_model
from transfer_neurons.names import TARGET_SIDE


def layer_write_magnitudes(effective_activations: np.ndarray, write_vectors: np.ndarray) -> np.ndarray:
    """[S, d_mlp] activations and [d_mlp, d_model] write vectors -> [d_mlp]: mean |a_i| * |v_i|."""
    return np.abs(effective_activations).mean(axis=0) * np.linalg.norm(write_vectors, axis=1)


def write_magnitudes(adapter: FamilyAdapter, dump: Dump) -> pl.DataFrame:
    """One row per neuron: layer, neuron, magnitude, and its percentile within the layer (0-100)."""
    frames = []
    for layer in range(dump.n_layers):
        values = layer_write_magnitudes(
            dump.effective_activations(layer), adapter.write_vectors(layer).cpu().numpy()
        ).astype(np.float64)
        ranks = values.argsort().argsort()  # 0 = smallest
        frames.append(
            pl.DataFrame(
                {
                    "layer": np.full(values.shape[0], layer, dtype=np.int32),
                    "neuron": np.arange(values.shape[0], dtype=np.int32),
                    "magnitude": values,
                    "percentile": 100.0 * ranks / max(values.shape[0] - 1, 1),
                }
            )
        )
    return pl.concat(frames)


def run_write_magnitudes(manifest: Path, train_dump: Path, *, labels: dict) -> pl.DataFrame:
    """The ``write_magnitudes`` rule: magnitudes over the L2 side of the training dump."""
    adapter = load_model(manifest, device="cpu", with_tokenizer=False).adapter  # only the write vectors are read
    return labelled(write_magnitudes(adapter, Dump(Path(train_dump) / TARGET_SIDE)), **labels)

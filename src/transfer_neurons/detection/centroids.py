"""Language-space centroids per layer, from the training split's last-token states.

* Type-1 (shared semantic space): mean over English-L2 pairs of the pair's average state.
* Type-2 (L2's own space): mean of the L2 states.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from transfer_neurons.data.dumps import Dump
from transfer_neurons.names import NeuronType


def type1_centroids(pivot_states: np.ndarray, target_states: np.ndarray) -> np.ndarray:
    """[L, N, d] English and L2 states of the same pairs -> [L, d]."""
    if pivot_states.shape != target_states.shape:
        raise ValueError(f"pair states differ in shape: {pivot_states.shape} vs {target_states.shape}")
    return ((pivot_states + target_states) / 2).mean(axis=1)


def type2_centroids(target_states: np.ndarray) -> np.ndarray:
    """[L, N, d] L2 states -> [L, d]."""
    return target_states.mean(axis=1)


def centroids_from_dumps(pivot_dump: Path, target_dump: Path) -> dict[str, np.ndarray]:
    pivot = Dump(pivot_dump).all_layers("layer_output")
    target = Dump(target_dump).all_layers("layer_output")
    return {NeuronType.TYPE1: type1_centroids(pivot, target), NeuronType.TYPE2: type2_centroids(target)}


def save_centroids(centroids: dict[str, np.ndarray], path: Path) -> None:
    save_file({name: np.ascontiguousarray(array, dtype=np.float32) for name, array in centroids.items()}, str(path))


def load_centroids(path: Path) -> dict[str, np.ndarray]:
    return load_file(str(path))

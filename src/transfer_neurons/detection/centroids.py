"""Language-space centroids per layer, from the training split's last-token states.

* Type-1 (shared semantic space): mean over English-L2 pairs of the pair's average state.
* Type-2 (L2's own space): mean of the L2 states.

The states are the layer states under ``runtime.last_layer`` (``Dump.layer_states``): with ``normed``
(the paper's ``hidden_states[1:]``) the last layer's centroids are means of final-normed states, as
the authors' centroids are, while the scores still move the raw residual stream toward them; with
``raw`` every centroid is a mean of raw layer outputs, as in the authors' ``type2_re_implementation``.
Only the last layer differs, and of the two types only Type-2 has candidates there.
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


def centroids_from_dumps(pivot_dump: Path, target_dump: Path, last_layer: str = "normed") -> dict[str, np.ndarray]:
    """Both centroid types [L, d] from the English and L2 dumps of the training pairs; ``last_layer`` is
    ``runtime.last_layer`` (``normed``: the paper's final-normed last layer; ``raw``)."""
    pivot = Dump(pivot_dump).layer_states(last_layer)
    target = Dump(target_dump).layer_states(last_layer)
    return {NeuronType.TYPE1: type1_centroids(pivot, target), NeuronType.TYPE2: type2_centroids(target)}


def save_centroids(centroids: dict[str, np.ndarray], path: Path) -> None:
    save_file({name: np.ascontiguousarray(array, dtype=np.float32) for name, array in centroids.items()}, str(path))


def load_centroids(path: Path) -> dict[str, np.ndarray]:
    return load_file(str(path))

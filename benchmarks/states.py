"""The project's side of the scoring comparisons: the workflow's own functions, and what the references read of them.

Nothing here captures states or computes scores: ``InMemoryDump.of`` is the workflow's
batched capture (``batched_last_token_states``) and ``score_layers`` its scoring loop
(the ``score_neurons`` rule's, with the ``centroid`` detector). This module arranges their
inputs and outputs for the references (``naive.py``, ``authors_procedure.py``) and for the
agreement checks.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from transfer_neurons.data.dumps import Dump, InMemoryDump
from transfer_neurons.detection.centroids import type1_centroids, type2_centroids
from transfer_neurons.detection.detectors import detector
from transfer_neurons.detection.stages import score_layers
from transfer_neurons.model.adapters import FamilyAdapter
from transfer_neurons.model.loading import LoadedModel
from transfer_neurons.names import NEURON_TYPES, NeuronType

CENTROID_TYPES = NEURON_TYPES  # the order of the centroid axis of every [T, ...] array here


def captured(loaded: LoadedModel, sentences: Sequence[str], batch_size: int, max_batch_tokens: int | None):
    """The workflow's batched capture of ``sentences``, held in memory (rows in the sentences' order)."""
    return InMemoryDump.of(loaded, sentences, batch_size=batch_size, max_batch_tokens=max_batch_tokens)


def centroids_of(pivot: Dump | InMemoryDump, target: Dump | InMemoryDump) -> dict[str, np.ndarray]:
    """Both centroid types from the pairs' layer outputs, as ``centroids_from_dumps`` makes them: type -> [L, d]."""
    pivot_output, target_output = pivot.all_layers("layer_output"), target.all_layers("layer_output")
    return {
        NeuronType.TYPE1: type1_centroids(pivot_output, target_output),
        NeuronType.TYPE2: type2_centroids(target_output),
    }


def stacked_centroids(centroids: dict[str, np.ndarray]) -> np.ndarray:
    """type -> [L, d] as one array [T, L, d] in ``CENTROID_TYPES`` order (what the references read)."""
    return np.stack([centroids[neuron_type] for neuron_type in CENTROID_TYPES])


def all_write_vectors(adapter: FamilyAdapter) -> np.ndarray:
    """Every layer's write vectors, as the adapter gives them: [L, d_mlp, d_model] float32."""
    return np.stack([adapter.write_vectors(layer).cpu().numpy() for layer in range(adapter.facts.n_layers)])


def all_effective_activations(dump: Dump | InMemoryDump) -> np.ndarray:
    """The dump's effective activations (activation times write scale) of every layer: [L, N, d_mlp]."""
    return np.stack([dump.effective_activations(layer) for layer in range(dump.n_layers)])


def dump_rows(dump: InMemoryDump, rows: Sequence[int] | slice) -> InMemoryDump:
    """The same states for a subset of the sentences (every array's sentence axis is axis 1)."""
    return InMemoryDump({name: array[:, rows] for name, array in dump.arrays.items()})


def workflow_scores(adapter: FamilyAdapter, dump: Dump | InMemoryDump, centroids: dict[str, np.ndarray]):
    """The workflow's scoring loop over every layer: a tidy table (neuron_type, layer, neuron, score)."""
    return score_layers(adapter, dump, centroids, detector("centroid"))


def score_array(table: pl.DataFrame, n_layers: int, d_mlp: int) -> np.ndarray:
    """A tidy score table as an array [T, L, n] (``CENTROID_TYPES`` order), for the agreement checks.

    Fails if the table does not hold exactly one score per (type, layer, neuron).
    """
    if table.height != len(CENTROID_TYPES) * n_layers * d_mlp:
        raise ValueError(f"expected {len(CENTROID_TYPES) * n_layers * d_mlp} scores, got {table.height}")
    scores = np.full((len(CENTROID_TYPES), n_layers, d_mlp), np.nan)
    type_index = table["neuron_type"].replace_strict({name: index for index, name in enumerate(CENTROID_TYPES)})
    scores[type_index.to_numpy(), table["layer"].to_numpy(), table["neuron"].to_numpy()] = table["score"].to_numpy()
    if np.isnan(scores).any():
        raise ValueError("the score table repeats some (type, layer, neuron) and misses others")
    return scores

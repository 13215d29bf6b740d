"""The project's batched path from sentences to scoring inputs, as the workflow runs it in memory."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from transfer_neurons.data.dumps import last_token_states
from transfer_neurons.detection.centroids import type1_centroids, type2_centroids
from transfer_neurons.detection.scoring import centroid_scores
from transfer_neurons.model.adapters import FamilyAdapter
from transfer_neurons.model.batching import batches
from transfer_neurons.model.loading import LoadedModel

CENTROID_TYPES = ("type1", "type2")


@dataclass
class ScoringInputs:
    """Last-token states of S sentences, float32: [L, S, d_model] or [L, S, d_mlp]."""

    residual: np.ndarray
    activations: np.ndarray  # effective: activation times write scale
    layer_output: np.ndarray


def batched_states(loaded: LoadedModel, sentences: Sequence[str], batch_size: int, max_tokens: int) -> ScoringInputs:
    """Batched forward passes with the project's capture, stacked along the sentence axis."""
    residual, activations, layer_output = [], [], []
    for _, chunk in batches(list(sentences), batch_size):
        states, _ = last_token_states(loaded, chunk, max_tokens)
        residual.append(states.residual_pre_mlp.cpu().numpy())
        activations.append(states.effective_activations.cpu().numpy())
        layer_output.append(states.layer_output.cpu().numpy())
    return ScoringInputs(*(np.concatenate(parts, axis=1) for parts in (residual, activations, layer_output)))


def all_write_vectors(adapter: FamilyAdapter) -> np.ndarray:
    """[L, d_mlp, d_model] float32."""
    return np.stack([adapter.write_vectors(layer).cpu().numpy() for layer in range(adapter.facts.n_layers)])


def both_centroids(pivot_output: np.ndarray, target_output: np.ndarray) -> np.ndarray:
    """Type-1 and Type-2 centroids from [L, S, d] layer outputs -> [2, L, d] (order of CENTROID_TYPES)."""
    return np.stack([type1_centroids(pivot_output, target_output), type2_centroids(target_output)])


def project_scores(
    residual: np.ndarray, activations: np.ndarray, write_vectors: np.ndarray, centroids: np.ndarray
) -> np.ndarray:
    """The project's closed form, called once per layer with every centroid type, as ``detection.score_layers`` does.

    residual [L, S, d], activations [L, S, n], write_vectors [L, n, d], centroids [T, L, d] -> [T, L, n].
    """
    per_layer = [
        centroid_scores(residual[layer], activations[layer], write_vectors[layer], centroids[:, layer])
        for layer in range(residual.shape[0])
    ]
    return np.stack(per_layer, axis=1)

"""The project's straightforward implementation of the published scoring procedure, kept for comparison.

It does what the paper's scripts do, written plainly: one sentence at a time, a batch-1
forward pass, then for every layer the matrix of all neurons' moved states ``r + a_i v_i``
([d_mlp, d_model]) and its cosine to the centroid. It is written without
``transfer_neurons.detection.scoring`` so that the agreement check compares two independent
derivations. Three choices make it faster than the authors' own loop (``authors_procedure.py``
re-implements that one faithfully, and is timed beside this one):

* one forward pass and one moved-state matrix per (sentence, layer) serve both centroid
  types (the paper runs Type-1 and Type-2 detection separately);
* the forward pass runs the decoder stack only (no logits) and the write vectors are read
  once, not per sentence;
* the matrix is float32 numpy with a plain cosine, not sklearn's ``cosine_similarity``
  (which validates and normalises a copy of its input); float64 would be 2.5x slower.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from transfer_neurons.data.dumps import last_token_states
from transfer_neurons.model.loading import LoadedModel


def batch1_states(loaded: LoadedModel, sentences: Sequence[str]):
    """One batch-1 forward pass per sentence.

    Returns residual_pre_mlp [L, S, d_model] and effective activations [L, S, d_mlp]
    (activation times the per-token write scale), float32.
    """
    residuals, activations = [], []
    for sentence in sentences:
        states = last_token_states(loaded, [sentence])
        residuals.append(states.residual_pre_mlp[:, 0].cpu().numpy())
        activations.append(states.effective_activations[:, 0].cpu().numpy())
    return np.stack(residuals, axis=1), np.stack(activations, axis=1)


def cosine_to_centroids(states: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Cosine of every row to every centroid. states [m, d], centroids [T, d] -> [m, T]."""
    norms = np.linalg.norm(states, axis=1)[:, None] * np.linalg.norm(centroids, axis=1)[None, :]
    return (states @ centroids.T) / norms


def naive_centroid_scores(
    residual: np.ndarray, activations: np.ndarray, write_vectors: np.ndarray, centroids: np.ndarray
) -> np.ndarray:
    """Mean over sentences of cos(r + a_i v_i, c) - cos(r, c), for every neuron i.

    residual [L, S, d], activations [L, S, n] (effective), write_vectors [L, n, d],
    centroids [T, L, d] (one row per centroid type) -> scores [T, L, n] (float64).
    """
    n_layers, n_sentences, _ = residual.shape
    totals = np.zeros((centroids.shape[0], n_layers, write_vectors.shape[1]))
    for sentence in range(n_sentences):
        for layer in range(n_layers):
            r = residual[layer, sentence].astype(np.float32)
            a = activations[layer, sentence].astype(np.float32)
            moved = r[None, :] + a[:, None] * write_vectors[layer]  # [n, d]: every neuron's write added to r
            layer_centroids = centroids[:, layer].astype(np.float32)
            change = cosine_to_centroids(moved, layer_centroids) - cosine_to_centroids(r[None, :], layer_centroids)
            totals[:, layer] += change.T
    return totals / n_sentences

"""Neuron scores: how much each neuron's write moves the residual stream toward a centroid.

Centroid score (the paper's detector), for neuron i of layer l with centroid c::

    score_i = mean_s [ cos(r_s + a_si v_i, c) - cos(r_s, c) ]

computed in closed form for all neurons of a layer at once, using
``|r + a v|^2 = |r|^2 + 2 a (r.v) + a^2 |v|^2``: one [S, d] x [d, n] matmul, no
per-sentence [n, d] matrix.

Correlation score (alternative detector): Pearson correlation over sentences between
neuron i's effective activation and the change the MLP makes in cos(state, c).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

SENTENCE_CHUNK = 512


def _cosine_to(vectors: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """cos(vectors[s], direction) for each row s. [S, d] -> [S]."""
    norms = np.linalg.norm(vectors, axis=1) * np.linalg.norm(direction)
    return (vectors @ direction) / np.maximum(norms, 1e-30)


def centroid_scores(
    residual: np.ndarray, activations: np.ndarray, write_vectors: np.ndarray, centroids: np.ndarray
) -> np.ndarray:
    """Closed-form centroid scores of every neuron of one layer.

    residual [S, d] (pre-MLP), activations [S, n] (effective), write_vectors [n, d],
    centroids [d] or [k, d] -> scores [n] or [k, n] (float64).

    The moved norm ``|r + a v|`` does not depend on the centroid, so it is computed once
    and shared by every centroid; per centroid only dot products remain. Element-wise work
    is float32, sums are float64.
    """
    single = centroids.ndim == 1
    centroids = np.atleast_2d(centroids).astype(np.float32)
    write_vectors = write_vectors.astype(np.float32)
    write_norm_sq = np.einsum("nd,nd->n", write_vectors, write_vectors)  # [n]
    write_dot_centroids = centroids @ write_vectors.T  # [k, n]
    centroid_norms = np.linalg.norm(centroids.astype(np.float64), axis=1)  # [k]
    totals = np.zeros((len(centroids), write_vectors.shape[0]))
    for start in range(0, residual.shape[0], SENTENCE_CHUNK):
        r = residual[start : start + SENTENCE_CHUNK].astype(np.float32)
        a = activations[start : start + SENTENCE_CHUNK].astype(np.float32)
        r_norm_sq = np.einsum("sd,sd->s", r, r)  # [s]
        r_dot_write = r @ write_vectors.T  # [s, n], the one matmul
        moved_norm_sq = r_norm_sq[:, None] + a * (2 * r_dot_write + a * write_norm_sq[None, :])
        inverse_moved_norm = 1 / np.sqrt(np.maximum(moved_norm_sq, 1e-30))  # [s, n]
        inverse_norm = 1 / np.sqrt(np.maximum(r_norm_sq, 1e-30))  # [s]
        r_dot_centroids = r @ centroids.T  # [s, k]
        for index in range(len(centroids)):
            r_dot_c = r_dot_centroids[:, index]
            moved = (r_dot_c[:, None] + a * write_dot_centroids[index][None, :]) * inverse_moved_norm
            change = moved - (r_dot_c * inverse_norm)[:, None]
            totals[index] += change.sum(axis=0, dtype=np.float64)
    scores = totals / (residual.shape[0] * centroid_norms[:, None])
    return scores[0] if single else scores


def correlation_scores(
    residual: np.ndarray, layer_output: np.ndarray, activations: np.ndarray, centroids: np.ndarray
) -> np.ndarray:
    """Pearson r between activations [S, n] and cos(out, c) - cos(r, c) over sentences.

    centroids [d] or [k, d] -> [n] or [k, n]. Neurons that never vary get 0.
    """
    single = centroids.ndim == 1
    acts = activations.astype(np.float64)
    acts_centered = acts - acts.mean(axis=0)
    acts_spread = (acts_centered**2).sum(axis=0)
    results = []
    for centroid in np.atleast_2d(centroids).astype(np.float64):
        change = _cosine_to(layer_output.astype(np.float64), centroid) - _cosine_to(
            residual.astype(np.float64), centroid
        )
        change_centered = change - change.mean()
        covariance = acts_centered.T @ change_centered
        spread = np.sqrt(acts_spread * (change_centered**2).sum())
        results.append(np.where(spread > 0, covariance / np.where(spread > 0, spread, 1), 0.0))
    return results[0] if single else np.stack(results)


DETECTORS: dict[str, Callable[..., np.ndarray]] = {
    "centroid": lambda layer: centroid_scores(
        layer["residual_pre_mlp"], layer["activations"], layer["write_vectors"], layer["centroids"]
    ),
    "correlation": lambda layer: correlation_scores(
        layer["residual_pre_mlp"], layer["layer_output"], layer["activations"], layer["centroids"]
    ),
}


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

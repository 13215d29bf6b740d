"""Neuron scores: how much each neuron's write moves the residual stream toward a centroid.

Centroid score (the paper's detector), for neuron i of layer l with centroid c::

    score_i = mean_s [ cos(r_s + a_si v_i, c) - cos(r_s, c) ]

computed in closed form for all neurons of a layer at once, using
``|r + a v|^2 = |r|^2 + 2 a (r.v) + a^2 |v|^2``: one [S, d] x [d, n] matmul, no
per-sentence [n, d] matrix, and a form of the cosine change that avoids cancellation.

Correlation score (alternative detector): Pearson correlation over sentences between
neuron i's effective activation and the change the MLP makes in cos(state, c).
"""

from __future__ import annotations

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

    With m = |r + a v| and delta = m^2 - |r|^2 = a (2 r.v + a |v|^2), the change is
    rewritten without subtracting two nearly equal cosines::

        |c| [cos(r + a v, c) - cos(r, c)] = a (v.c) / m - (r.c / |r|) * delta / (m (m + |r|))

    Both terms are a centroid-independent [S, n] array weighted per centroid, so the sum
    over sentences is a column sum and a [k, S] x [S, n] matmul: element-wise work does not
    grow with the number of centroids. Element-wise work and the sums within a chunk of
    sentences are float32 (torch, multi-threaded; the terms cannot cancel, so float32 sums
    are as exact as the terms); chunks are accumulated in float64.
    """
    # Imported here, not at module level: the detector registry that refers to this function is
    # read by the Snakefile at start-up, where importing torch would cost seconds per job.
    import torch

    single = centroids.ndim == 1
    with torch.no_grad():
        centroid_rows = torch.as_tensor(np.atleast_2d(centroids), dtype=torch.float32)
        writes = torch.as_tensor(write_vectors, dtype=torch.float32)
        # A product and a row sum, not vector_norm: the adapters hand the weight over transposed, and
        # vector_norm along its strided rows took 3.5 ms a layer against 0.3 ms.
        write_norm_sq = (writes * writes).sum(dim=1)  # [n]
        write_dot_centroids = (centroid_rows @ writes.T).double()  # [k, n]
        moved_terms = torch.zeros(writes.shape[0], dtype=torch.float64)  # sum_s a / m
        return_terms = torch.zeros(len(centroid_rows), writes.shape[0], dtype=torch.float64)
        for start in range(0, residual.shape[0], SENTENCE_CHUNK):
            r = torch.as_tensor(residual[start : start + SENTENCE_CHUNK], dtype=torch.float32)
            a = torch.as_tensor(activations[start : start + SENTENCE_CHUNK], dtype=torch.float32)
            r_norm = r.norm(dim=1).clamp_min_(1e-30)  # [s]
            # delta / 2 = a (r.v + a |v|^2 / 2): the [s, d] x [d, n] matmul is the one big product.
            half_delta = torch.addcmul(r @ writes.T, a, write_norm_sq, value=0.5).mul_(a)
            moved_norm = torch.add((r_norm * r_norm)[:, None], half_delta, alpha=2).clamp_min_(1e-30).sqrt_()
            moved_terms += (a / moved_norm).sum(dim=0)
            half_shrink = half_delta.div_((moved_norm + r_norm[:, None]).mul_(moved_norm))  # delta / (2 m (m + |r|))
            base_cosines = (r @ centroid_rows.T) / r_norm[:, None]  # [s, k], times |c|
            return_terms += 2 * (base_cosines.T @ half_shrink)
        totals = write_dot_centroids * moved_terms - return_terms
        centroid_norms = centroid_rows.double().norm(dim=1).clamp_min(1e-30)
        scores = (totals / (residual.shape[0] * centroid_norms[:, None])).numpy()
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

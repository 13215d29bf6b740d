"""Cross-lingual alignment measures between paired English and L2 vectors.

All functions take X [N, d] and Y [N, d] where row i of X and row i of Y are a pair.
"""

from __future__ import annotations

import numpy as np


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    vectors = vectors.astype(np.float64)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-30)


def _nearest_neighbours(vectors: np.ndarray, k: int) -> np.ndarray:
    """Indices [N, k] of each row's k most cosine-similar other rows."""
    unit = _unit_rows(vectors)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    return np.argsort(-similarity, axis=1, kind="stable")[:, :k]


def mutual_knn_alignment(pivot: np.ndarray, target: np.ndarray, k: int) -> float:
    """Mean share of each pair's k nearest neighbours that agree in the two spaces (0..1)."""
    if pivot.shape[0] != target.shape[0]:
        raise ValueError(f"mismatched pairs: {pivot.shape[0]} vs {target.shape[0]}")
    if not 0 < k < pivot.shape[0]:
        raise ValueError(f"k must be between 1 and {pivot.shape[0] - 1}, got {k}")
    pivot_neighbours = _nearest_neighbours(pivot, k)
    target_neighbours = _nearest_neighbours(target, k)
    shared = [len(set(a) & set(b)) for a, b in zip(pivot_neighbours, target_neighbours, strict=True)]
    return float(np.mean(shared) / k)


def derangement(n: int) -> np.ndarray:
    """A fixed permutation with no fixed point (shift by one), for non-parallel pairs."""
    if n < 2:
        raise ValueError("non-parallel pairs need at least two pairs")
    return np.roll(np.arange(n), -1)


def paired_cosines(pivot: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """Mean cosine of parallel pairs and of non-parallel pairs (a fixed derangement)."""
    pivot_unit, target_unit = _unit_rows(pivot), _unit_rows(target)
    parallel = np.einsum("nd,nd->n", pivot_unit, target_unit)
    shuffled = np.einsum("nd,nd->n", pivot_unit, target_unit[derangement(len(target_unit))])
    return {"parallel": float(parallel.mean()), "non_parallel": float(shuffled.mean())}


def centroid_similarity_matrix(centroids: dict[str, np.ndarray]) -> list[tuple[str, str, float]]:
    """Cosine similarity between every two language centroids: (language_a, language_b, cosine)."""
    names = list(centroids)
    unit = _unit_rows(np.stack([centroids[name] for name in names]))
    similarity = unit @ unit.T
    return [(a, b, float(similarity[i, j])) for i, a in enumerate(names) for j, b in enumerate(names)]


def pca_2d(vectors: np.ndarray) -> np.ndarray:
    """Project rows onto their first two principal components. [N, d] -> [N, 2]."""
    centred = vectors.astype(np.float64) - vectors.mean(axis=0)
    _, _, components = np.linalg.svd(centred, full_matrices=False)
    return centred @ components[:2].T

"""Cross-lingual alignment measures between paired English and L2 vectors.

All functions take X [N, d] and Y [N, d] where row i of X and row i of Y are a pair.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows (the last axis) scaled to unit length, float64."""
    vectors = vectors.astype(np.float64)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-30)


def nearest_neighbours(vectors: np.ndarray, k: int) -> np.ndarray:
    """Indices [N, k] of each row's k most cosine-similar other rows, most similar first.

    The first j columns of the result for k are the result for j <= k.
    """
    unit = unit_rows(vectors)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    return np.argsort(-similarity, axis=1, kind="stable")[:, :k]


def check_knn_ks(knn_ks: Iterable[int], n_pairs: int) -> None:
    for k in knn_ks:
        if not 0 < k < n_pairs:
            raise ValueError(f"k must be between 1 and {n_pairs - 1}, got {k}")


def neighbour_shares(pivot_neighbours: np.ndarray, target_neighbours: np.ndarray) -> np.ndarray:
    """Per row, the share of its neighbours that the two [N, k] neighbour lists have in common -> [N]."""
    k = pivot_neighbours.shape[1]
    shared = [len(set(a) & set(b)) for a, b in zip(pivot_neighbours, target_neighbours, strict=True)]
    return np.asarray(shared, dtype=np.float64) / k


def shared_neighbour_share(pivot_neighbours: np.ndarray, target_neighbours: np.ndarray) -> float:
    """Mean share of each row's neighbours that the two [N, k] neighbour lists have in common."""
    return float(neighbour_shares(pivot_neighbours, target_neighbours).mean())


def mutual_knn_alignment(pivot: np.ndarray, target: np.ndarray, k: int) -> float:
    """Mean share of each pair's k nearest neighbours that agree in the two spaces (0..1)."""
    if pivot.shape[0] != target.shape[0]:
        raise ValueError(f"mismatched pairs: {pivot.shape[0]} vs {target.shape[0]}")
    check_knn_ks([k], pivot.shape[0])
    return shared_neighbour_share(nearest_neighbours(pivot, k), nearest_neighbours(target, k))


def derangement(n: int) -> np.ndarray:
    """A fixed permutation with no fixed point (shift by one), for non-parallel pairs."""
    if n < 2:
        raise ValueError("non-parallel pairs need at least two pairs")
    return np.roll(np.arange(n), -1)


def row_cosines(pivot: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Cosine of row i of ``pivot`` with row i of ``target``, along the last axis: [..., N, d] -> [..., N]."""
    return np.einsum("...d,...d->...", unit_rows(pivot), unit_rows(target))


def paired_cosines(pivot: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """Mean cosine of parallel pairs and of non-parallel pairs (a fixed derangement)."""
    return {
        "parallel": float(row_cosines(pivot, target).mean()),
        "non_parallel": float(row_cosines(pivot, target[derangement(len(target))]).mean()),
    }

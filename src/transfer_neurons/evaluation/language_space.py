"""Where the languages sit in each layer: centroid similarities of every language, and a 2-D PCA.

Reads the per-condition L2 centroids that the state analysis saves and the test dumps.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
from safetensors.numpy import load_file

from transfer_neurons.data.dumps import Dump
from transfer_neurons.data.tidy import labelled
from transfer_neurons.evaluation.alignment import unit_rows
from transfer_neurons.evaluation.states import condition_centroid_key
from transfer_neurons.names import NEURON_TYPES, NORMAL, PIVOT_SIDE, TARGET_SIDE

FOCUS_CONDITIONS = (NORMAL, *NEURON_TYPES)  # normal, and the main N of each type deactivated


def centroid_similarity_matrix(centroids: dict[str, np.ndarray]) -> list[tuple[str, str, float]]:
    """Cosine similarity between every two language centroids: (language_a, language_b, cosine)."""
    names = list(centroids)
    unit = unit_rows(np.stack([centroids[name] for name in names]))
    similarity = unit @ unit.T
    return [(a, b, float(similarity[i, j])) for i, a in enumerate(names) for j, b in enumerate(names)]


def pca_2d(vectors: np.ndarray) -> np.ndarray:
    """Project rows onto their first two principal components. [N, d] -> [N, 2]."""
    centred = vectors.astype(np.float64) - vectors.mean(axis=0)
    _, _, components = np.linalg.svd(centred, full_matrices=False)
    return centred @ components[:2].T


def pca_layer_indices(n_layers: int, fractions) -> list[int]:
    """Layers at the given fractions of depth (0 = first, 1 = last), without repeats."""
    return sorted({min(n_layers - 1, round(fraction * (n_layers - 1))) for fraction in fractions})


def centroid_similarities(
    english_centroids: np.ndarray, per_language: dict[str, dict[str, np.ndarray]], pivot: str
) -> pl.DataFrame:
    """Cosine of every two language centroids per condition and layer.

    ``english_centroids`` [L, d]; ``per_language[lang]`` maps condition centroid keys to [L, d].
    """
    rows = []
    for condition in FOCUS_CONDITIONS:
        for layer in range(english_centroids.shape[0]):
            centroids = {pivot: english_centroids[layer]}
            centroids.update(
                {lang: arrays[condition_centroid_key(condition)][layer] for lang, arrays in per_language.items()}
            )
            for language_a, language_b, cosine in centroid_similarity_matrix(centroids):
                rows.append({"condition": condition, "layer": layer, "language_a": language_a,
                             "language_b": language_b, "cosine": cosine})  # fmt: skip
    return pl.DataFrame(rows)


def language_pca(english: np.ndarray, target_test_dumps: dict[str, Path], pivot: str, pca_fractions) -> pl.DataFrame:
    """2-D PCA of every language's normal last-token states at chosen depths (English states [L, N, d])."""
    projection_rows = []
    for layer in pca_layer_indices(english.shape[0], pca_fractions):
        states = {pivot: english[layer]}
        states.update(
            {
                lang: Dump(Path(path) / TARGET_SIDE).layer("layer_output", layer)
                for lang, path in target_test_dumps.items()
            }
        )
        projected = pca_2d(np.concatenate(list(states.values())))
        names = np.concatenate([[lang] * len(values) for lang, values in states.items()])
        projection_rows.extend(
            {"layer": layer, "language": name, "pc1": float(x), "pc2": float(y)}
            for name, (x, y) in zip(names, projected, strict=True)
        )
    return pl.DataFrame(projection_rows)


def run_language_space(
    english_test_dump: Path, arrays_by_language: dict[str, Path], *, pivot: str, pca_fractions, labels: dict,
    target_test_dumps: dict[str, Path],
) -> tuple[pl.DataFrame, pl.DataFrame]:  # fmt: skip
    """Centroid similarities of all languages per layer and condition, and a 2-D PCA (normal states)."""
    english = Dump(Path(english_test_dump) / PIVOT_SIDE).all_layers("layer_output")
    per_language = {lang: load_file(str(path)) for lang, path in arrays_by_language.items()}
    similarity = centroid_similarities(english.mean(axis=1), per_language, pivot)
    projection = language_pca(english, target_test_dumps, pivot, pca_fractions)
    return labelled(similarity, **labels), labelled(projection, **labels)

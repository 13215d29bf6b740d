"""The detector registry: one entry per way of scoring every MLP neuron against the centroids.

A detector is declared once, here: its name (used in the config, in file paths and in tables),
its score function and what it reads of a layer. Adding one means one function in
``detection.scoring`` and one ``Detector`` entry below.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from transfer_neurons.detection.scoring import centroid_scores, correlation_scores


@dataclass(frozen=True)
class LayerInputs:
    """What a detector may read of one layer, over S sentences (float32).

    ``centroids`` is [k, d_model]: every centroid type at once, so that work shared between
    types (the moved norms of the centroid score) is done once.
    """

    residual_pre_mlp: np.ndarray  # [S, d_model]
    layer_output: np.ndarray  # [S, d_model]
    effective_activations: np.ndarray  # [S, d_mlp]: activations times the write scale
    write_vectors: np.ndarray  # [d_mlp, d_model]
    centroids: np.ndarray  # [k, d_model]


@dataclass(frozen=True)
class Detector:
    name: str
    score: Callable[[LayerInputs], np.ndarray]  # -> [k, d_mlp], one row per centroid
    description: str


DETECTORS: dict[str, Detector] = {
    detector.name: detector
    for detector in (
        Detector(
            "centroid",
            lambda layer: centroid_scores(
                layer.residual_pre_mlp, layer.effective_activations, layer.write_vectors, layer.centroids
            ),
            "the paper's score: mean change in the cosine to the centroid that one neuron's write makes",
        ),
        Detector(
            "correlation",
            lambda layer: correlation_scores(
                layer.residual_pre_mlp, layer.layer_output, layer.effective_activations, layer.centroids
            ),
            "Pearson r over sentences of a neuron's activation and the layer's change in cosine to the centroid",
        ),
    )
}


class UnknownDetectorError(ValueError):
    pass


def detector(name: str) -> Detector:
    """Look up a detector, failing with the registered names."""
    try:
        return DETECTORS[name]
    except KeyError:
        raise UnknownDetectorError(f"unknown detector {name!r}; choose one of {', '.join(DETECTORS)}") from None

"""The detector registry: one entry per way of finding neurons, declared once.

A detector has a name (used in the config, in file paths and in tables) and one of two functions:

* ``score``: scores every MLP neuron of a layer against the Type-1 and Type-2 centroids, from the
  layer's last-token states (``LayerInputs``); the ``score_neurons`` rule ranks the scores into
  top-N lists. These are the detectors ``detection.detectors`` names.
* ``select``: picks each language's neurons from activation probabilities [languages, L, d_mlp]
  (counted over every token of each language's text); the ``lape`` rule runs it.

Adding one means one function in ``detection.scoring`` (or its own module) and one entry below.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from transfer_neurons.detection.lape import language_specific_neurons
from transfer_neurons.detection.scoring import centroid_scores, correlation_scores
from transfer_neurons.registry import Registry, UnknownEntryError


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
    description: str
    score: Callable[[LayerInputs], np.ndarray] | None = None  # -> [k, d_mlp], one row per centroid
    select: Callable[..., list[list[tuple[int, int]]]] | None = None  # probabilities -> per-language neurons


class UnknownDetectorError(UnknownEntryError):
    pass


DETECTORS: Registry[Detector] = Registry("detector", UnknownDetectorError)
DETECTORS.register(
    Detector(
        "centroid",
        "the paper's score: mean change in the cosine to the centroid that one neuron's write makes",
        score=lambda layer: centroid_scores(
            layer.residual_pre_mlp, layer.effective_activations, layer.write_vectors, layer.centroids
        ),
    )
)
DETECTORS.register(
    Detector(
        "correlation",
        "Pearson r over sentences of a neuron's activation and the layer's change in cosine to the centroid",
        score=lambda layer: correlation_scores(
            layer.residual_pre_mlp, layer.layer_output, layer.effective_activations, layer.centroids
        ),
    )
)
DETECTORS.register(
    Detector(
        "lape",
        "language-specific neurons by activation probability entropy (Tang et al., ACL 2024)",
        select=language_specific_neurons,
    )
)


def detector(name: str) -> Detector:
    """Look up a detector, failing with the registered names."""
    return DETECTORS[name]


def score_detector(name: str) -> Detector:
    """A detector that scores neurons against the centroids (those ``detection.detectors`` lists)."""
    found = detector(name)
    if found.score is None:
        scorers = ", ".join(entry.name for entry in DETECTORS.values() if entry.score is not None)
        raise UnknownDetectorError(f"detector {name!r} does not score neurons against centroids; use one of {scorers}")
    return found

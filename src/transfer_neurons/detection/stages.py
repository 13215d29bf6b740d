"""The detection stages as functions from files to files (what the Snakemake rules call)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import polars as pl
from tqdm import tqdm

from transfer_neurons.data.dumps import Dump
from transfer_neurons.data.tidy import labelled
from transfer_neurons.detection import detectors
from transfer_neurons.detection.centroids import centroids_from_dumps, load_centroids, save_centroids
from transfer_neurons.detection.detectors import Detector, LayerInputs
from transfer_neurons.detection.lape import LapeSettings, activation_probabilities
from transfer_neurons.detection.ranking import rank_candidates, top_n_lists
from transfer_neurons.model.adapters import FamilyAdapter
from transfer_neurons.model.loading import load_model
from transfer_neurons.names import NEURON_TYPES, PIVOT_SIDE, TARGET_SIDE

log = logging.getLogger(__name__)


def compute_centroids(train_dump: Path, output: Path, last_layer: str = "normed") -> None:
    """The ``centroids`` rule: both centroid types of one language's training dump (``last_layer`` is
    ``runtime.last_layer``)."""
    train = Path(train_dump)
    save_centroids(centroids_from_dumps(train / PIVOT_SIDE, train / TARGET_SIDE, last_layer), output)


def layer_inputs(
    adapter: FamilyAdapter, target_dump: Dump, centroids: dict[str, np.ndarray], layer: int
) -> LayerInputs:
    """One layer of the L2 training dump, with every centroid type of that layer."""
    return LayerInputs(
        residual_pre_mlp=target_dump.layer("residual_pre_mlp", layer),
        layer_output=target_dump.layer("layer_output", layer),
        effective_activations=target_dump.effective_activations(layer),
        write_vectors=adapter.write_vectors(layer).cpu().numpy(),
        centroids=np.stack([centroids[neuron_type][layer] for neuron_type in NEURON_TYPES]),
    )


def score_layers(
    adapter: FamilyAdapter, target_dump: Dump, centroids: dict[str, np.ndarray], scorer: Detector
) -> pl.DataFrame:
    """Score every neuron of every layer against both centroid types -> tidy table."""
    score = scorer.score
    assert score is not None  # detectors.score_detector found the detector
    layer_scores = []
    for layer in tqdm(range(target_dump.n_layers), desc=f"score ({scorer.name})", unit="layer"):
        # Both centroid types at once: they share the layer's moved norms.
        layer_scores.append(score(layer_inputs(adapter, target_dump, centroids, layer)))
    return score_table(np.stack(layer_scores))


def score_table(scores: np.ndarray) -> pl.DataFrame:
    """[L, T, n] scores (``NEURON_TYPES`` order) -> tidy table, rows by layer, type, neuron.

    Built once from whole columns: a frame per layer and type cost more than the scoring's
    element-wise work.
    """
    n_layers, n_types, d_mlp = scores.shape
    if n_types != len(NEURON_TYPES):
        raise ValueError(f"expected scores for {len(NEURON_TYPES)} neuron types, got {n_types}")
    type_index = np.tile(np.repeat(np.arange(n_types), d_mlp), n_layers)
    return pl.DataFrame(
        {
            "neuron_type": pl.Series(NEURON_TYPES, dtype=pl.String).gather(type_index),
            "layer": np.repeat(np.arange(n_layers, dtype=np.int32), n_types * d_mlp),
            "neuron": np.tile(np.arange(d_mlp, dtype=np.int32), n_layers * n_types),
            "score": scores.reshape(-1),
        }
    )


def score_neurons(
    manifest: Path,
    train_dump: Path,
    centroids_path: Path,
    *,
    detector: str,
    type1_fraction: float,
    top_n_labels: list,
    labels: dict[str, str],
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Return (full score table, top-N lists), both tagged with ``labels`` columns (model, language...)."""
    scorer = detectors.score_detector(detector)  # an unknown name fails before the model loads
    adapter = load_model(manifest, device="cpu", with_tokenizer=False).adapter  # only the write vectors are read
    target_dump = Dump(Path(train_dump) / TARGET_SIDE)
    scores = score_layers(adapter, target_dump, load_centroids(centroids_path), scorer)
    ranked = rank_candidates(scores, type1_fraction, target_dump.n_layers)
    return labelled(ranked, **labels), labelled(top_n_lists(ranked, top_n_labels), **labels)


def language_activity(
    train_dumps: dict[str, Path], pivot: str, pivot_dump: Path | None = None
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Languages, their active counts [languages, L, d_mlp] and token counts [languages].

    Each L2's counts come from the L2 side of its training dump. English's come from ``pivot_dump``,
    the split's distinct English sentences dumped once (``dump_pivot_split``), or without one from
    the sum over the English sides of every language's dump (each dumped with its own counts).
    """
    languages = [pivot, *train_dumps]
    if not train_dumps:
        raise ValueError("LAPE needs the training dump of at least one language besides the pivot")
    counts, tokens = [], []
    for directory in train_dumps.values():
        target, n_target = Dump(Path(directory) / TARGET_SIDE).active_counts()
        counts.append(target)
        tokens.append(n_target)
    if pivot_dump is not None:
        pivot_counts, pivot_tokens = Dump(Path(pivot_dump)).active_counts()
    else:
        sides = [Dump(Path(directory) / PIVOT_SIDE).active_counts() for directory in train_dumps.values()]
        pivot_counts = np.sum([side_counts for side_counts, _ in sides], axis=0)
        pivot_tokens = sum(n_tokens for _, n_tokens in sides)
    return languages, np.stack([pivot_counts, *counts]), np.array([pivot_tokens, *tokens])


def select_lape_neurons(
    train_dumps: dict[str, Path], *, pivot: str, settings: LapeSettings, labels: dict[str, str],
    pivot_dump: Path | None = None,
) -> pl.DataFrame:  # fmt: skip
    """The ``lape`` rule: each language's LAPE neurons (language, layer, neuron), English included
    (its counts from ``pivot_dump`` when given: see ``language_activity``)."""
    languages, counts, tokens = language_activity(train_dumps, pivot, pivot_dump)
    for lang, n_tokens in zip(languages, tokens, strict=True):
        log.info("%s: %d tokens counted", lang, n_tokens)
    select = detectors.detector("lape").select
    assert select is not None  # the registry's "lape" entry selects
    selected = select(activation_probabilities(counts, tokens), settings)
    rows = [(lang, layer, neuron) for lang, pairs in zip(languages, selected, strict=True) for layer, neuron in pairs]
    table = pl.DataFrame(rows, schema={"language": pl.String, "layer": pl.Int32, "neuron": pl.Int32}, orient="row")
    return labelled(table, **labels)

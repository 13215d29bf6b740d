"""Where the languages sit in each layer: centroid similarities, a 2-D PCA and the SVD dimensionality.

Three analyses of every language's last-token states (English and each L2), as the paper's
``analysis/lang_latent_space`` scripts make them:

* centroid similarity: the cosine of every two languages' mean states (uncentred means), per layer
  and condition (``centroids_dis.py``);
* PCA: one 2-D PCA per layer and condition, fit on the states of all languages together (centred;
  components signed as scikit-learn's), each language's states projected on it (``pca.py``);
* SVD: per language and layer, the number of singular directions of the uncentred [N, d] states
  needed for 90, 95 and 99 % of their squared norm (``svd.py``), normal states only.

Conditions: ``normal`` and each L2's own Type-1 or Type-2 neurons deactivated (``evaluation.states.
positions``; the paper: the last token); English is never intervened on. The layer column counts
decoder layers from 0; ``-1`` is the embedding output (``embedding: true``, the paper's index 0),
and the last layer is read as ``runtime.last_layer`` says.

States come from one of two sources (``evaluation.language_space.sentences``):

* ``test``: the test dumps (English: the pivot side of the first language's test pairs; each L2: the
  target side of its own), with the L2 centroids of every condition that the state evaluation saves.
  Per-sentence states exist for the normal condition only, so the PCA is of normal states.
* ``questions``: row-aligned questions in every language, their states from the ``language_states``
  rule (``evaluation.language_states``) under every condition.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import polars as pl

from transfer_neurons.data.dumps import Dump, check_last_layer
from transfer_neurons.data.tidy import labelled
from transfer_neurons.detection.ranking import candidate_layers
from transfer_neurons.evaluation.alignment import unit_rows
from transfer_neurons.evaluation.language_states import EMBEDDING_LAYER, StoredLanguageStates, layer_indices
from transfer_neurons.evaluation.states import condition_centroid_key
from transfer_neurons.names import NEURON_TYPES, NORMAL, PIVOT_SIDE, TARGET_SIDE

log = logging.getLogger(__name__)

FOCUS_CONDITIONS = (NORMAL, *NEURON_TYPES)  # normal, and the main N of each type deactivated
SVD_THRESHOLDS = (0.9, 0.95, 0.99)  # the authors' svd.py
PCA_LAYER_CHOICES = ("depths", "type2")


# --- the measures ------------------------------------------------------------------------------------
def centroid_similarity_matrix(centroids: dict[str, np.ndarray]) -> list[tuple[str, str, float]]:
    """Cosine similarity between every two language centroids: (language_a, language_b, cosine)."""
    names = list(centroids)
    unit = unit_rows(np.stack([centroids[name] for name in names]))
    similarity = unit @ unit.T
    return [(a, b, float(similarity[i, j])) for i, a in enumerate(names) for j, b in enumerate(names)]


def pca_2d(vectors: np.ndarray) -> np.ndarray:
    """Project rows onto their first two principal components (centred). [N, d] -> [N, 2].

    Each component is signed as scikit-learn's ``PCA`` signs it (``svd_flip`` on the components: the
    largest-magnitude coordinate positive), so the axes point the way the authors' figures do.
    """
    centred = vectors.astype(np.float64) - vectors.mean(axis=0)
    _, _, components = np.linalg.svd(centred, full_matrices=False)
    components = components[:2]
    signs = np.sign(components[np.arange(len(components)), np.abs(components).argmax(axis=1)])
    components = components * np.where(signs == 0, 1.0, signs)[:, None]
    return centred @ components.T


def components_for_variance(states: np.ndarray, thresholds: Sequence[float] = SVD_THRESHOLDS) -> dict[float, int]:
    """Per threshold t, the fewest singular directions of the uncentred states [N, d] whose squared
    singular values reach the share t of the total: ``searchsorted(cumsum(s^2) / sum(s^2), t) + 1``,
    as the authors' svd.py counts (the mean is not removed)."""
    singular = np.linalg.svd(states.astype(np.float64), compute_uv=False)
    cumulative = np.cumsum(singular**2) / np.sum(singular**2)
    return {float(t): min(int(np.searchsorted(cumulative, t)) + 1, len(singular)) for t in thresholds}


def pca_layer_indices(n_layers: int, fractions: Iterable[float]) -> list[int]:
    """Layers at the given fractions of depth (0 = first, 1 = last), without repeats."""
    return sorted({min(n_layers - 1, round(fraction * (n_layers - 1))) for fraction in fractions})


def pca_layers(choice: str, n_layers: int, *, depths: Sequence[float], type1_fraction: float) -> list[int]:
    """``evaluation.language_space.pca_layers``: ``depths`` (the layers at ``pca_depths``) or ``type2``
    (every layer of the Type-2 candidate range, the paper's layers 21-32 of 32)."""
    if choice == "depths":
        return pca_layer_indices(n_layers, depths)
    if choice == "type2":
        return candidate_layers(n_layers, type1_fraction)["type2"]
    raise ValueError(f"evaluation.language_space.pca_layers must be one of {PCA_LAYER_CHOICES}, got {choice!r}")


# --- where the states come from ------------------------------------------------------------------------
class DumpStates:
    """Language states from the test dumps (normal) and the state evaluation's centroids (every condition).

    ``english_dump`` and ``target_dumps`` are test dump directories (``pivot``/``target`` inside);
    ``centroid_arrays[lang]`` maps ``centroid/{condition}`` to the L2's [L, d] centroids.
    """

    def __init__(
        self, english_dump: Path, target_dumps: Mapping[str, Path], centroid_arrays: Mapping[str, Mapping],
        *, pivot: str, embedding: bool, last_layer: str,
    ) -> None:  # fmt: skip
        self.pivot, self.embedding, self.last_layer = pivot, embedding, check_last_layer(last_layer)
        self.dumps = {pivot: Dump(Path(english_dump) / PIVOT_SIDE)}
        self.dumps.update({lang: Dump(Path(path) / TARGET_SIDE) for lang, path in target_dumps.items()})
        self.arrays = centroid_arrays
        self.languages = list(self.dumps)
        self.layers = layer_indices(self.dumps[pivot].n_layers, embedding)
        for lang in target_dumps:
            self.check_last_layer_of_centroids(lang)

    def check_last_layer_of_centroids(self, language: str) -> None:
        """Fail when the state evaluation's normal centroid of the last layer is the mean of the other
        reading of the last layer than ``last_layer``: English's would then not match the L2's.

        Its normal centroid is the mean of the same test sentences' states as the dump's, so it lies next
        to one of the dump's two means (normed, raw) and far from the other.
        """
        normal = self.arrays[language].get(condition_centroid_key(NORMAL))
        dump = self.dumps[language]
        if normal is None or not (dump.directory / "final_normed.npy").is_file():
            return
        means = {"normed": dump.extra_state("final_normed").mean(axis=0),
                 "raw": dump.layer("layer_output", dump.n_layers - 1).mean(axis=0)}  # fmt: skip
        distance = {name: np.linalg.norm(normal[-1] - mean) / np.linalg.norm(mean) for name, mean in means.items()}
        held = min(distance, key=distance.__getitem__)
        if held != self.last_layer:
            raise ValueError(
                f"evaluate_states' centroids of {language} hold the {held} last layer, but runtime.last_layer is "
                f"{self.last_layer}: rerun evaluate_states with runtime.last_layer = {self.last_layer} (or set "
                "evaluation.language_space.sentences: questions)"
            )

    def has(self, condition: str, language: str) -> bool:
        return condition == NORMAL or language == self.pivot

    def states(self, condition: str, language: str, layer: int) -> np.ndarray:
        """[N, d_model]: normal states only (English's under every condition)."""
        if not self.has(condition, language):
            raise ValueError(
                f"evaluation.language_space: per-sentence states of {language} under {condition!r} need "
                "sentences: questions; the test dumps hold normal states only"
            )
        dump = self.dumps[language]
        if layer == EMBEDDING_LAYER:
            return dump.extra_state("embedding")
        return dump.layer_state(layer, self.last_layer)

    def centroid(self, condition: str, language: str, layer: int) -> np.ndarray:
        """[d_model]: English's mean state; an L2's centroid as the state evaluation saved it. The embedding
        output precedes every MLP, so no deactivation changes it: every condition has the normal one."""
        if language == self.pivot or layer == EMBEDDING_LAYER:
            return self.states(NORMAL, language, layer).mean(axis=0)
        return np.asarray(self.arrays[language][condition_centroid_key(condition)][layer])


class QuestionStates:
    """Language states of parallel questions under every condition (a ``language_states`` directory)."""

    def __init__(self, directory: Path) -> None:
        self.stored = StoredLanguageStates(directory)
        self.pivot, self.languages, self.layers = self.stored.pivot, self.stored.languages, self.stored.layers

    def has(self, condition: str, language: str) -> bool:
        return self.stored.has(condition, language)

    def states(self, condition: str, language: str, layer: int) -> np.ndarray:
        return self.stored.states(condition, language, layer)

    def centroid(self, condition: str, language: str, layer: int) -> np.ndarray:
        return self.states(condition, language, layer).mean(axis=0)


LanguageStates = DumpStates | QuestionStates
SENTENCE_SOURCES = ("test", "questions")


def open_language_states(
    sentences: str, *, pivot: str, embedding: bool, last_layer: str, english_dump: Path | None = None,
    target_dumps: Mapping[str, Path] | None = None, centroid_arrays: Mapping[str, Path] | None = None,
    states: Path | None = None,
) -> LanguageStates:  # fmt: skip
    """The states ``evaluation.language_space.sentences`` names: ``test`` (the test dumps and the state
    evaluation's centroid files, language -> path) or ``questions`` (a ``language_states`` directory,
    which fixes the embedding and the last layer when it is written)."""
    if sentences == "test":
        if english_dump is None or target_dumps is None or centroid_arrays is None:
            raise ValueError("evaluation.language_space.sentences: test needs the test dumps and the centroid files")
        arrays = read_centroid_arrays(centroid_arrays, last_layer)
        return DumpStates(english_dump, target_dumps, arrays, pivot=pivot, embedding=embedding, last_layer=last_layer)
    if sentences == "questions":
        if states is None:
            raise ValueError("evaluation.language_space.sentences: questions needs a language_states directory")
        return QuestionStates(states)
    raise ValueError(f"evaluation.language_space.sentences must be one of {SENTENCE_SOURCES}, got {sentences!r}")


def decoder_layer_count(source: LanguageStates) -> int:
    """The model's decoder layers (the layer indices without the embedding's)."""
    return sum(layer != EMBEDDING_LAYER for layer in source.layers)


# --- the analyses ----------------------------------------------------------------------------------------
def centroid_similarities(source: LanguageStates, conditions: Sequence[str] = FOCUS_CONDITIONS) -> pl.DataFrame:
    """Cosine of every two languages' centroids (uncentred means) per condition and layer: columns
    condition, layer, language_a, language_b, cosine (every ordered pair, each language with itself too)."""
    rows = []
    for condition in conditions:
        for layer in source.layers:
            centroids = {lang: source.centroid(condition, lang, layer) for lang in source.languages}
            for language_a, language_b, cosine in centroid_similarity_matrix(centroids):
                rows.append({"condition": condition, "layer": layer, "language_a": language_a,
                             "language_b": language_b, "cosine": cosine})  # fmt: skip
    return pl.DataFrame(rows, schema={"condition": pl.String, "layer": pl.Int64, "language_a": pl.String,
                                      "language_b": pl.String, "cosine": pl.Float64})  # fmt: skip


def language_pca(source: LanguageStates, layers: Sequence[int], conditions: Sequence[str] = (NORMAL,)) -> pl.DataFrame:
    """Per condition and layer, a 2-D PCA fit on every language's states: columns condition, layer,
    language, sentence (row within the language), pc1, pc2."""
    frames = []
    for condition in conditions:
        for layer in layers:
            states = {lang: source.states(condition, lang, layer) for lang in source.languages}
            projected = pca_2d(np.concatenate(list(states.values())))
            names = np.concatenate([[lang] * len(values) for lang, values in states.items()])
            rows = np.concatenate([np.arange(len(values)) for values in states.values()])
            frames.append(pl.DataFrame({"condition": condition, "layer": layer, "language": names, "sentence": rows,
                                        "pc1": projected[:, 0], "pc2": projected[:, 1]}))  # fmt: skip
    return pl.concat(frames).with_columns(pl.col("layer").cast(pl.Int64), pl.col("sentence").cast(pl.Int64))


def svd_dimensions(source: LanguageStates, thresholds: Sequence[float] = SVD_THRESHOLDS) -> pl.DataFrame:
    """Per language, layer and threshold, the singular directions the normal states need
    (``components_for_variance``): columns language, layer, threshold, components, sentences."""
    rows = []
    for lang in source.languages:
        for layer in source.layers:
            states = source.states(NORMAL, lang, layer)
            for threshold, count in components_for_variance(states, thresholds).items():
                rows.append({"language": lang, "layer": layer, "threshold": threshold, "components": count,
                             "sentences": len(states)})  # fmt: skip
    return pl.DataFrame(rows, schema={"language": pl.String, "layer": pl.Int64, "threshold": pl.Float64,
                                      "components": pl.Int64, "sentences": pl.Int64})  # fmt: skip


def check_pca_conditions(source: LanguageStates, conditions: Sequence[str]) -> None:
    """Fail naming the option when a PCA condition has no per-sentence states in this source."""
    lacking = [name for name in conditions if not all(source.has(name, lang) for lang in source.languages)]
    if lacking:
        raise ValueError(
            f"evaluation.language_space.pca_conditions: no per-sentence states under {', '.join(lacking)} "
            "(with sentences: test only the normal states are dumped; use sentences: questions)"
        )


def run_language_space(
    source: LanguageStates, *, conditions: Sequence[str], pca_layer_list: Sequence[int],
    pca_conditions: Sequence[str], svd_thresholds: Sequence[float], labels: dict,
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:  # fmt: skip
    """Centroid similarities (per condition and layer), the 2-D PCA (per PCA condition and layer) and
    the SVD dimensionality (normal states, per language and layer), each labelled."""
    check_pca_conditions(source, pca_conditions)
    similarity = centroid_similarities(source, conditions)
    projection = language_pca(source, pca_layer_list, pca_conditions)
    dimensions = svd_dimensions(source, svd_thresholds)
    return labelled(similarity, **labels), labelled(projection, **labels), labelled(dimensions, **labels)


def read_centroid_arrays(paths: Mapping[str, Path], last_layer: str) -> dict[str, dict[str, np.ndarray]]:
    """The state evaluation's safetensors of every language (language -> path) -> language -> arrays.

    Where a file records which last layer its centroids hold (metadata ``last_layer``), it must be
    ``last_layer``; otherwise the last layer of the L2 centroids would not match English's.
    """
    from safetensors import safe_open
    from safetensors.numpy import load_file

    arrays = {}
    for lang, path in paths.items():
        with safe_open(str(path), framework="numpy") as handle:
            recorded = (handle.metadata() or {}).get("last_layer")
        if recorded is None:
            log.info("%s does not record its last layer; read as runtime.last_layer = %s", path, last_layer)
        elif recorded != last_layer:
            raise ValueError(
                f"{path}: its centroids hold the {recorded} last layer, but runtime.last_layer is {last_layer}; "
                "rerun evaluate_states"
            )
        arrays[lang] = load_file(str(path))
    return arrays

"""The benchmark's references score what the workflow scores: the straightforward baseline, the authors'
loop and the workflow's scoring loop agree on random states (write scales included, as Gemma has)."""

import numpy as np
import pytest
import torch

from benchmarks.authors_procedure import sentence_layer_scores, their_scores
from benchmarks.cases.scoring import ScoresDisagreeError, max_difference, strided_layers
from benchmarks.naive import naive_centroid_scores
from benchmarks.states import (
    CENTROID_TYPES,
    all_effective_activations,
    dump_rows,
    score_array,
    stacked_centroids,
    workflow_scores,
)
from transfer_neurons.data.dumps import InMemoryDump

LAYERS, SENTENCES, D_MODEL, D_MLP = 3, 5, 8, 12


class WriteVectorsOnly:
    """What the workflow's scoring loop reads of an adapter: each layer's write vectors."""

    def __init__(self, write_vectors: np.ndarray) -> None:
        self.vectors = write_vectors

    def write_vectors(self, layer: int) -> torch.Tensor:
        return torch.from_numpy(self.vectors[layer])


@pytest.fixture
def problem():
    rng = np.random.default_rng(0)
    dump = InMemoryDump(
        {
            "layer_output": rng.normal(size=(LAYERS, SENTENCES, D_MODEL)).astype(np.float32),
            "residual_pre_mlp": rng.normal(size=(LAYERS, SENTENCES, D_MODEL)).astype(np.float32),
            "neuron_activations": rng.normal(size=(LAYERS, SENTENCES, D_MLP)).astype(np.float32),
            "write_scale": rng.uniform(0.5, 2.0, size=(LAYERS, SENTENCES)).astype(np.float32),
        }
    )
    write_vectors = rng.normal(size=(LAYERS, D_MLP, D_MODEL)).astype(np.float32)
    centroids = {name: rng.normal(size=(LAYERS, D_MODEL)).astype(np.float32) for name in CENTROID_TYPES}
    return dump, write_vectors, centroids


def test_baseline_authors_loop_and_workflow_agree(problem):
    dump, write_vectors, centroids = problem
    residual, activations = dump.all_layers("residual_pre_mlp"), all_effective_activations(dump)
    stacked = stacked_centroids(centroids)
    workflow = score_array(workflow_scores(WriteVectorsOnly(write_vectors), dump, centroids), LAYERS, D_MLP)
    baseline = naive_centroid_scores(residual, activations, write_vectors, stacked)
    authors = their_scores(residual, activations, write_vectors.__getitem__, stacked, range(LAYERS))
    np.testing.assert_allclose(baseline, workflow, atol=1e-5)
    np.testing.assert_allclose(authors, workflow, atol=1e-5)


def test_authors_loop_on_a_subset_of_layers(problem):
    dump, write_vectors, centroids = problem
    residual, activations = dump.all_layers("residual_pre_mlp"), all_effective_activations(dump)
    stacked = stacked_centroids(centroids)
    layers = strided_layers(LAYERS, 2)
    assert layers == [0, 2]  # the deepest layer is always timed
    subset = their_scores(residual, activations, write_vectors.__getitem__, stacked, layers)
    every = their_scores(residual, activations, write_vectors.__getitem__, stacked, range(LAYERS))
    np.testing.assert_array_equal(subset, every[:, layers])


def test_one_step_of_the_authors_loop_is_the_cosine_change():
    rng = np.random.default_rng(1)
    residual, centroid = rng.normal(size=D_MODEL), rng.normal(size=D_MODEL)
    activations, write_vectors = rng.normal(size=D_MLP), rng.normal(size=(D_MLP, D_MODEL))

    def cosine(vector):
        return vector @ centroid / np.linalg.norm(vector) / np.linalg.norm(centroid)

    expected = [cosine(residual + a * v) - cosine(residual) for a, v in zip(activations, write_vectors, strict=True)]
    np.testing.assert_allclose(
        sentence_layer_scores(residual, activations, write_vectors, centroid), expected, atol=1e-12
    )


def test_score_array_is_the_table_in_type_layer_neuron_order(problem):
    dump, write_vectors, centroids = problem
    table = workflow_scores(WriteVectorsOnly(write_vectors), dump, centroids)
    scores = score_array(table.reverse(), LAYERS, D_MLP)  # row order does not matter
    for index in (0, D_MLP + 3, table.height - 1):
        row = table.row(index, named=True)
        assert scores[CENTROID_TYPES.index(row["neuron_type"]), row["layer"], row["neuron"]] == row["score"]
    with pytest.raises(ValueError):
        score_array(table.head(-1), LAYERS, D_MLP)


def test_dump_rows_keeps_every_array_of_the_chosen_sentences(problem):
    dump = problem[0]
    subset = dump_rows(dump, slice(None, None, 2))
    for name, array in dump.arrays.items():
        np.testing.assert_array_equal(subset.arrays[name], array[:, ::2])
    np.testing.assert_array_equal(subset.effective_activations(1), dump.effective_activations(1)[::2])


def test_disagreement_above_the_tolerance_fails():
    assert max_difference(np.zeros(3), np.full(3, 5e-5), "close") == pytest.approx(5e-5)
    with pytest.raises(ScoresDisagreeError):
        max_difference(np.zeros(3), np.full(3, 1e-3), "far")

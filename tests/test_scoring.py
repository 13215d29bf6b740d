import numpy as np
import pytest
import torch

from transfer_neurons.detection.ranking import candidate_layers, resolve_top_n
from transfer_neurons.detection.scoring import centroid_scores, correlation_scores
from transfer_neurons.detection.stages import score_table
from transfer_neurons.model.adapters import adapter_for
from transfer_neurons.model.batching import tokenize
from transfer_neurons.model.hooks import capture_states
from transfer_neurons.names import NEURON_TYPES

SENTENCES = ["The cat sleeps.", "猫は寝ています。", "De kat slaapt.", "고양이가 자요.", "Il gatto dorme.", "Where?"]


def brute_force_centroid_scores(residual, activations, write_vectors, centroid):
    """The published procedure: add each neuron's write to r and take the cosine, one sentence at a time."""

    def cos(x, y):
        return (x @ y) / (np.linalg.norm(x, axis=-1) * np.linalg.norm(y))

    totals = np.zeros(write_vectors.shape[0])
    for r, a in zip(residual, activations, strict=True):
        moved = r[None, :] + a[:, None] * write_vectors  # [n, d]
        totals += cos(moved, centroid) - cos(r, centroid)
    return totals / residual.shape[0]


def captured(model, tokenizer):
    adapter = adapter_for(model)
    batch = tokenize(tokenizer, SENTENCES)
    with torch.no_grad(), capture_states(adapter) as result:
        model(**batch.model_inputs(model))
    return adapter, result["states"]


def test_closed_form_equals_brute_force_on_every_family(model, tokenizer):
    adapter, states = captured(model, tokenizer)
    rng = np.random.default_rng(0)
    for layer in range(adapter.facts.n_layers):
        residual = states.residual_pre_mlp[layer].numpy().astype(np.float64)
        activations = (states.neuron_activations[layer] * states.write_scale[layer][:, None]).numpy()
        writes = adapter.write_vectors(layer).numpy().astype(np.float64)
        centroid = states.layer_output[layer].numpy().mean(0) + rng.normal(size=residual.shape[1])
        closed = centroid_scores(residual, activations, writes, centroid)
        brute = brute_force_centroid_scores(residual, activations.astype(np.float64), writes, centroid)
        np.testing.assert_allclose(closed, brute, atol=1e-5, rtol=0)


def test_small_changes_on_a_large_residual_keep_their_relative_precision():
    # Gemma's residual reaches ~1e5 while single neurons move it by ~1e-2: subtracting two float32
    # cosines would leave only noise; the closed form must still rank and size these changes.
    rng = np.random.default_rng(1)
    residual = rng.normal(size=(40, 64)) * 1e5
    writes = rng.normal(size=(32, 64)) * 1e-3
    activations = rng.normal(size=(40, 32)) * 10
    centroid = rng.normal(size=64)
    closed = centroid_scores(residual.astype(np.float32), activations.astype(np.float32), writes, centroid)
    brute = brute_force_centroid_scores(residual, activations, writes, centroid)
    assert np.abs(brute).max() < 1e-7  # the regime where float32 differences of cosines fail
    np.testing.assert_allclose(closed, brute, rtol=1e-3, atol=0)


def test_centroid_score_sign_follows_direction():
    residual = np.array([[1.0, 0.0], [1.0, 0.1]])
    writes = np.array([[0.0, 1.0], [0.0, -1.0]])
    activations = np.ones((2, 2))
    scores = centroid_scores(residual, activations, writes, np.array([0.0, 1.0]))
    assert scores[0] > 0 > scores[1]


def test_correlation_scores_find_the_neuron_that_drives_the_change():
    rng = np.random.default_rng(1)
    n_sentences, d = 200, 8
    residual = rng.normal(size=(n_sentences, d))
    centroid = np.ones(d)
    activations = rng.normal(size=(n_sentences, 3))
    layer_output = residual + activations[:, [1]] * centroid[None, :]  # neuron 1 pushes toward c
    scores = correlation_scores(residual, layer_output, activations, centroid)
    assert np.argmax(scores) == 1
    assert scores[1] > 0.5
    assert abs(scores[0]) < 0.3


def test_correlation_of_constant_neuron_is_zero():
    residual = np.random.default_rng(2).normal(size=(10, 4))
    activations = np.ones((10, 1))
    assert correlation_scores(residual, residual * 2, activations, np.ones(4))[0] == 0


def test_candidate_layers_match_the_paper_split():
    layers = candidate_layers(32, 0.625)
    assert layers["type1"] == list(range(20))
    assert layers["type2"] == list(range(20, 32))


def test_paper_fraction_resolves_to_paper_n_at_paper_scale():
    assert resolve_top_n("paper_fraction", 20 * 14336) == 1000
    assert resolve_top_n("paper_fraction", 11 * 2048) == 79
    assert resolve_top_n(1000, 50) == 50
    with pytest.raises(ValueError, match="paper_fraction"):
        resolve_top_n("most", 10)


def test_several_centroids_at_once_equal_one_at_a_time():
    rng = np.random.default_rng(4)
    residual, activations = rng.normal(size=(40, 8)), rng.normal(size=(40, 12))
    writes, centroids = rng.normal(size=(12, 8)), rng.normal(size=(2, 8))
    together = centroid_scores(residual, activations, writes, centroids)
    for index, centroid in enumerate(centroids):
        np.testing.assert_allclose(together[index], centroid_scores(residual, activations, writes, centroid), atol=1e-6)
    correlated = correlation_scores(residual, residual + activations @ writes, activations, centroids)
    np.testing.assert_allclose(
        correlated[1], correlation_scores(residual, residual + activations @ writes, activations, centroids[1])
    )


def test_score_table_puts_every_score_at_its_type_layer_and_neuron():
    scores = np.random.default_rng(5).normal(size=(3, len(NEURON_TYPES), 4))  # [L, T, n]
    table = score_table(scores)
    assert table.columns == ["neuron_type", "layer", "neuron", "score"]
    assert table.height == scores.size
    assert table.select("layer", "neuron_type", "neuron").rows() == sorted(
        table.select("layer", "neuron_type", "neuron").rows(),
        key=lambda row: (row[0], NEURON_TYPES.index(row[1]), row[2]),
    )
    for neuron_type, layer, neuron, score in table.iter_rows():
        assert score == scores[layer, NEURON_TYPES.index(neuron_type), neuron]


def test_score_table_refuses_scores_for_the_wrong_number_of_types():
    with pytest.raises(ValueError, match="neuron types"):
        score_table(np.zeros((2, len(NEURON_TYPES) + 1, 4)))

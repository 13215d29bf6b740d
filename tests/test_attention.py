"""The attention analysis: conditions as rows of one pass give each condition's attention alone."""

import numpy as np
import pytest

from transfer_neurons.evaluation.attention import attention_by_run, entropy, jensen_shannon
from transfer_neurons.model.hooks import NeuronEdit

SENTENCES = ["The cat sleeps on the sofa.", "猫は寝ています。", "Dov'è la stazione?"]


@pytest.fixture
def eager(loaded):
    loaded.model.set_attn_implementation("eager")
    return loaded


@pytest.mark.parametrize("positions", ["prompt", "last"])
def test_conditions_stacked_as_rows_give_the_attention_of_each_alone(eager, positions):
    d_mlp = eager.facts.d_mlp
    neuron_sets = {"normal": {}, "early": {0: list(range(0, d_mlp, 2))}, "middle": {1: [3, 4], 2: [0]}}
    runs = {name: NeuronEdit(neurons, 0.0, positions) for name, neurons in neuron_sets.items()}
    stacked = attention_by_run(eager, SENTENCES, runs, None)
    for name, edit in runs.items():
        alone = attention_by_run(eager, SENTENCES, {name: edit}, None)[name]
        np.testing.assert_allclose(stacked[name], alone, rtol=1e-5, atol=1e-6)
    assert stacked["early"].shape == (eager.facts.n_layers, len(SENTENCES), *stacked["early"].shape[2:])
    assert not np.allclose(stacked["early"][1:], stacked["normal"][1:], rtol=0, atol=1e-7)  # layer 0's MLP is after


def test_divergence_and_entropy_of_known_distributions():
    uniform, peaked = np.full(4, 0.25), np.array([1.0, 0.0, 0.0, 0.0])
    assert jensen_shannon(uniform, uniform) == pytest.approx(0.0)
    assert entropy(uniform) == pytest.approx(np.log(4))
    assert entropy(peaked) == pytest.approx(0.0)
    assert jensen_shannon(peaked, uniform) == pytest.approx(jensen_shannon(uniform, peaked))

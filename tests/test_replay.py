import numpy as np
import pytest
import torch

from transfer_neurons.data.dumps import last_token_states
from transfer_neurons.evaluation.alignment import derangement, row_cosines
from transfer_neurons.evaluation.conditions import InterventionSettings
from transfer_neurons.evaluation.states import states_by_run
from transfer_neurons.model.batching import batches, decoder_forward, tokenize
from transfer_neurons.model.hooks import HookSession, NeuronEdit, scaled_neurons

SENTENCES = ["The cat sleeps on the sofa.", "猫は寝ています。", "Dov'è la stazione?", "Hallo"]


def states_under(loaded, neurons, settings):
    """The reference: every layer computed, one condition at a time."""
    outputs, activations = [], []
    for _, chunk in batches(SENTENCES, settings.batch_size):
        with scaled_neurons(loaded.adapter, neurons, settings.factor, settings.positions):
            states = last_token_states(loaded, chunk)
        outputs.append(states.layer_output.numpy())
        activations.append(states.neuron_activations.numpy())
    return np.concatenate(outputs, axis=1), np.concatenate(activations, axis=1)


@pytest.mark.parametrize("positions", ["prompt", "last", "prompt_last"])
def test_shared_prefix_and_replay_give_the_states_of_full_passes(loaded, positions):
    adapter = loaded.adapter
    last = adapter.facts.n_layers - 1
    neuron_sets = {"normal": {}, "early": {0: [1, 5], last: [2]}, "late": {last: [0, 3, 7]}, "middle": {1: [4]}}
    settings = InterventionSettings(positions=positions, factor=0.0, batch_size=3)
    pivot_activations = np.random.default_rng(0).normal(size=(last + 1, len(SENTENCES), adapter.facts.d_mlp))
    runs = {name: NeuronEdit(neurons, settings.factor, settings.positions) for name, neurons in neuron_sets.items()}
    replayed = states_by_run(loaded, SENTENCES, runs, batch_size=settings.batch_size, max_batch_tokens=None,
                             pivot_activations=pivot_activations)  # fmt: skip
    for name, neurons in neuron_sets.items():
        outputs, activations = states_under(loaded, neurons, settings)
        np.testing.assert_allclose(replayed[name].layer_output, outputs, atol=1e-5, rtol=1e-5)
        shifted = activations[:, derangement(len(SENTENCES))]
        for pairing, (pivot, target) in {
            "parallel": (pivot_activations, activations),
            "non_parallel": (pivot_activations, shifted),
        }.items():
            np.testing.assert_allclose(replayed[name].activation_cosines[pairing].mean(axis=1),
                                       row_cosines(pivot, target).mean(axis=1), atol=1e-6)  # fmt: skip
    # The late condition changed the last layer only: the replay must not hide a real change.
    late, normal = replayed["late"].layer_output, replayed["normal"].layer_output
    assert not np.allclose(late[last], normal[last], atol=1e-6)
    np.testing.assert_array_equal(late[:last], normal[:last])


def test_replay_skips_the_layer_computation_and_restores_it(loaded):
    model, tokenizer, adapter = loaded.model, loaded.tokenizer, loaded.adapter
    layer = adapter.layers()[0]
    calls = []
    with HookSession(adapter) as counting:
        counting.observe(adapter.contribution_module(0), lambda *args: calls.append(1))
        with HookSession(adapter) as session:
            recorded = session.record_layers()
            last_token_states(loaded, SENTENCES[:2])
        assert len(calls) == 1
        with HookSession(adapter) as session, torch.no_grad():
            session.replay_layers({0: recorded[0]})
            decoder_forward(model, tokenize(tokenizer, SENTENCES[:2]))
        assert len(calls) == 1  # layer 0's MLP did not run
        assert "forward" not in vars(layer)
        last_token_states(loaded, SENTENCES[:2])
        assert len(calls) == 2


def test_an_edit_names_the_layers_it_touches():
    assert NeuronEdit({3: [1], 1: [0], 0: []}).layers() == {1, 3}
    assert NeuronEdit().layers() == set()

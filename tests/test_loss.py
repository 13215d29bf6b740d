import numpy as np
import torch

from transfer_neurons.evaluation.conditions import InterventionSettings
from transfer_neurons.evaluation.loss import sentence_losses

SENTENCES = ["The cat sleeps on the sofa.", "猫は寝ています。", "Dov'è la stazione più vicina?", "Hallo"]
SETTINGS = InterventionSettings(factor=0.0, batch_size=3, positions="prompt")


def test_normal_loss_is_the_models_own_loss(loaded):
    losses = sentence_losses(loaded, SENTENCES, {}, SETTINGS)  # batched, left-padded
    for sentence, loss in zip(SENTENCES, losses, strict=True):
        ids = torch.tensor([loaded.tokenizer(sentence)["input_ids"]])
        with torch.no_grad():
            own = loaded.model(input_ids=ids, labels=ids).loss.item()
        np.testing.assert_allclose(loss, own, rtol=1e-4)


def test_deactivating_neurons_changes_the_loss(loaded):
    every_neuron = {layer: list(range(loaded.facts.d_mlp)) for layer in range(loaded.facts.n_layers)}
    normal = sentence_losses(loaded, SENTENCES, {}, SETTINGS)
    deactivated = sentence_losses(loaded, SENTENCES, every_neuron, SETTINGS)
    assert not np.allclose(normal, deactivated, atol=1e-4)

import numpy as np
import polars as pl
import torch

from transfer_neurons.evaluation.conditions import InterventionSettings
from transfer_neurons.evaluation.loss import held_out_sentences, losses_by_run
from transfer_neurons.model.hooks import NeuronEdit

SENTENCES = ["The cat sleeps on the sofa.", "猫は寝ています。", "Dov'è la stazione più vicina?", "Hallo"]
SETTINGS = InterventionSettings(factor=0.0, batch_size=3, positions="prompt")


def test_normal_loss_is_the_models_own_loss(loaded):
    losses = losses_by_run(loaded, SENTENCES, {"normal": NeuronEdit()}, batch_size=3, max_batch_tokens=None)["normal"]
    for sentence, loss in zip(SENTENCES, losses, strict=True):
        ids = torch.tensor([loaded.tokenizer(sentence)["input_ids"]])
        with torch.no_grad():
            own = loaded.model(input_ids=ids, labels=ids).loss.item()
        np.testing.assert_allclose(loss, own, rtol=1e-4)


def test_deactivating_neurons_changes_the_loss(loaded):
    every_neuron = {layer: list(range(loaded.facts.d_mlp)) for layer in range(loaded.facts.n_layers)}
    runs = {"normal": NeuronEdit(), "off": NeuronEdit(every_neuron, 0.0, "prompt")}
    losses = losses_by_run(loaded, SENTENCES, runs, batch_size=3, max_batch_tokens=None)
    assert not np.allclose(losses["normal"], losses["off"], atol=1e-4)


def test_conditions_stacked_as_rows_give_the_losses_of_each_alone(loaded):
    d_mlp, last = loaded.facts.d_mlp, loaded.facts.n_layers - 1
    neuron_sets = {
        "normal": {},
        "early": {0: [1, 5, 7]},
        "late": {last: list(range(0, d_mlp, 3))},
        "both": {0: [2], 2: [9]},
    }
    for positions in ("prompt", "last"):
        runs = {name: NeuronEdit(neurons, 0.5, positions) for name, neurons in neuron_sets.items()}
        stacked = losses_by_run(loaded, SENTENCES, runs, batch_size=3, max_batch_tokens=None)
        for name, edit in runs.items():
            alone = losses_by_run(loaded, SENTENCES, {name: edit}, batch_size=3, max_batch_tokens=None)[name]
            np.testing.assert_allclose(stacked[name], alone, rtol=1e-5, atol=1e-6)
        if positions == "prompt":  # the last position predicts no token: editing it alone leaves the loss
            assert not np.allclose(stacked["late"], stacked["normal"], rtol=0, atol=1e-6)


def write_pairs(path, lang, n):
    pl.DataFrame({
        "pivot_text": [f"en {lang} {i}" for i in range(n)],
        "target_text": [f"{lang} {i}" for i in range(n)],
        "kept": [i != 1 for i in range(n)],  # a dropped pair is not held-out text
    }).write_parquet(path)  # fmt: skip
    return path


def test_held_out_text_is_english_and_the_languages_own_or_every_languages(tmp_path):
    pairs = {lang: write_pairs(tmp_path / f"{lang}.parquet", lang, 5) for lang in ("ja", "it")}
    own = held_out_sentences(pairs, "en", 3, own="it")
    assert own == {"en": ["en it 0", "en it 2", "en it 3"], "it": ["it 0", "it 2", "it 3"]}
    every = held_out_sentences(pairs, "en", 2)
    assert every == {"en": ["en ja 0", "en ja 2"], "ja": ["ja 0", "ja 2"], "it": ["it 0", "it 2"]}

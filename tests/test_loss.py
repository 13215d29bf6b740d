import numpy as np
import polars as pl
import torch

from transfer_neurons.evaluation.conditions import InterventionSettings
from transfer_neurons.evaluation.loss import held_out_sentences, sentence_losses

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

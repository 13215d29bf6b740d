"""runtime.dtype reaches the weights and the dumps; runtime.last_layer reads the last layer as the paper does.

The paper's states are HF's ``output_hidden_states``: ``[0]`` the embedding output, ``[l + 1]`` the raw
output of layer l, and the last entry the final-normed state. ``normed`` must give exactly that last
entry, ``raw`` the last layer's raw output, on every family.
"""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
import torch

from tests.tiny import save_tiny_model
from transfer_neurons.data.dumps import Dump, dump_activations, dump_split, last_token_states, with_last_layer
from transfer_neurons.detection.centroids import centroids_from_dumps
from transfer_neurons.model.batching import decoder_forward, tokenize
from transfer_neurons.model.device import pick_device_and_dtype
from transfer_neurons.model.hooks import HookSession
from transfer_neurons.model.loading import load_model, prepare_model
from transfer_neurons.names import NeuronType
from transfer_neurons.reporting.provenance import precision

SENTENCES = ["The cat sleeps.", "Waar is het station?", "駅はどこですか？", "Il gatto dorme sul divano adesso."]


def hidden_states_at_last_token(loaded, sentences) -> list[torch.Tensor]:
    """HF's own reading: ``output_hidden_states`` at each sentence's last token, [batch, d] per entry."""
    batch = tokenize(loaded.tokenizer, sentences)
    with torch.no_grad():
        output = decoder_forward(loaded.model, batch, output_hidden_states=True)
    return [states[:, -1].float() for states in output.hidden_states]


def raw_last_layer_output(loaded, sentences) -> torch.Tensor:
    """The last decoder layer's own output at the last token, read by a plain observer."""
    seen = {}
    batch = tokenize(loaded.tokenizer, sentences)
    with torch.no_grad(), HookSession(loaded.adapter) as session:
        session.observe(loaded.adapter.layers()[-1], lambda module, args, output: seen.__setitem__(
            "out", (output[0] if isinstance(output, tuple) else output)[:, -1].float()))  # fmt: skip
        decoder_forward(loaded.model, batch)
    return seen["out"]


# --- precision -------------------------------------------------------------------------------------
DTYPE_OPTIONS = [("auto", torch.float32), ("float32", torch.float32), ("bfloat16", torch.bfloat16),
                 ("float16", torch.float16)]  # fmt: skip


@pytest.mark.parametrize(("option", "expected"), DTYPE_OPTIONS)
def test_dtype_option_resolves_on_the_cpu(option, expected):
    assert pick_device_and_dtype("cpu", option) == (torch.device("cpu"), expected)


def test_an_unknown_dtype_is_refused_naming_the_option():
    with pytest.raises(ValueError, match="runtime.dtype"):
        pick_device_and_dtype("cpu", "float64")


@pytest.fixture(scope="module")
def tiny_manifest(tmp_path_factory):
    root = tmp_path_factory.mktemp("precision")
    model_dir = save_tiny_model("llama", root / "model")
    prepare_model("tiny", {"path": str(model_dir)}, root / "out")
    return root / "out" / "manifest.json"


@pytest.mark.parametrize(("option", "expected"), [("auto", torch.float32), ("bfloat16", torch.bfloat16),
                                                  ("float16", torch.float16)])  # fmt: skip
def test_dtype_reaches_the_loaded_weights(tiny_manifest, option, expected):
    loaded = load_model(tiny_manifest, device="cpu", dtype=option)
    assert {parameter.dtype for parameter in loaded.model.parameters()} == {expected}
    assert loaded.dtype_name == str(expected).removeprefix("torch.")


def test_dtype_reaches_the_dumps_meta(tiny_manifest, tmp_path):
    corpus = pl.DataFrame({"id": ["a", "b", "c"], "pivot_text": SENTENCES[:3], "target_text": SENTENCES[1:],
                           "split": ["train"] * 3})  # fmt: skip
    corpus.write_parquet(tmp_path / "corpus.parquet")
    dump_split(tiny_manifest, tmp_path / "corpus.parquet", "train", tmp_path / "dump", tmp_path / "pairs.parquet",
               batch_size=2, max_batch_tokens=None, max_tokens=None, device="cpu", dtype="bfloat16")  # fmt: skip
    for side in ("pivot", "target"):
        meta = json.loads((tmp_path / "dump" / side / "meta.json").read_text())
        assert meta["dtype"] == "bfloat16"


def test_provenance_states_the_precision_and_the_last_layer():
    assert precision({"runtime": {"device": "cuda", "dtype": "float32", "last_layer": "raw"}}) == {
        "device": "cuda", "dtype": "float32", "last_layer": "raw"}  # fmt: skip
    assert precision({"runtime": {"device": "auto", "dtype": "auto"}})["dtype"].startswith("auto (bfloat16 on CUDA")


# --- the last layer --------------------------------------------------------------------------------
def test_normed_last_layer_is_hf_last_hidden_state_and_raw_is_the_layer_output(loaded):
    states = last_token_states(loaded, SENTENCES)
    hidden = hidden_states_at_last_token(loaded, SENTENCES)
    normed = with_last_layer(states.layer_output, states.final_normed, "normed")
    raw = with_last_layer(states.layer_output, states.final_normed, "raw")
    torch.testing.assert_close(normed[-1], hidden[-1], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(raw[-1], raw_last_layer_output(loaded, SENTENCES), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(raw[-1], hidden[-1], atol=1e-3)  # the final norm does change the state
    for layer in range(loaded.facts.n_layers - 1):  # below the last, both are HF's hidden_states[layer + 1]
        torch.testing.assert_close(normed[layer], hidden[layer + 1], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(raw[layer], hidden[layer + 1], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(states.embedding, hidden[0], atol=1e-5, rtol=1e-5)


def test_dump_reads_both_last_layers_and_the_embedding(tmp_path, loaded):
    dump_activations(loaded, SENTENCES, tmp_path, batch_size=3, max_batch_tokens=None)
    dump = Dump(tmp_path)
    hidden = [state.numpy() for state in hidden_states_at_last_token(loaded, SENTENCES)]
    raw_last = raw_last_layer_output(loaded, SENTENCES).numpy()

    def close(actual, expected):
        np.testing.assert_allclose(actual, expected, atol=2e-3 * np.abs(expected).max(), rtol=0)

    close(dump.layer_states("normed")[-1], hidden[-1])
    close(dump.layer_state(dump.n_layers - 1, "normed"), hidden[-1])
    close(dump.layer_states("raw")[-1], raw_last)
    close(dump.all_layers("layer_output")[-1], raw_last)  # the raw array stays raw: scoring reads it
    close(dump.layer_states("normed")[0], hidden[1])
    close(dump.extra_state("embedding"), hidden[0])


def test_type2_centroid_of_the_last_layer_follows_the_option(tmp_path, loaded):
    for side, sentences in (("pivot", SENTENCES[::-1]), ("target", SENTENCES)):
        dump_activations(loaded, sentences, tmp_path / side, batch_size=4, max_batch_tokens=None)
    normed = centroids_from_dumps(tmp_path / "pivot", tmp_path / "target", "normed")
    raw = centroids_from_dumps(tmp_path / "pivot", tmp_path / "target", "raw")
    target = Dump(tmp_path / "target")
    np.testing.assert_allclose(normed[NeuronType.TYPE2][-1], target.extra_state("final_normed").mean(axis=0))
    np.testing.assert_allclose(raw[NeuronType.TYPE2][-1], target.all_layers("layer_output")[-1].mean(axis=0))
    np.testing.assert_array_equal(normed[NeuronType.TYPE2][:-1], raw[NeuronType.TYPE2][:-1])


def test_an_old_dump_without_the_normed_state_names_the_fix(tmp_path, loaded):
    dump_activations(loaded, SENTENCES[:2], tmp_path, batch_size=2, max_batch_tokens=None)
    for suffix in (".npy", ".scale.npy"):
        (tmp_path / f"final_normed{suffix}").unlink()
    assert Dump(tmp_path).layer_states("raw").shape[0] == loaded.facts.n_layers  # raw needs no new array
    with pytest.raises(FileNotFoundError, match="runtime.last_layer: raw"):
        Dump(tmp_path).layer_states("normed")


def test_an_unknown_last_layer_is_refused():
    with pytest.raises(ValueError, match="runtime.last_layer"):
        with_last_layer(np.zeros((2, 1, 3)), np.zeros((1, 3)), "final")

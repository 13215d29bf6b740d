import numpy as np
import polars as pl
import pytest
import torch

from transfer_neurons.data.dumps import (
    Dump,
    InMemoryDump,
    dump_activations,
    last_token_states,
    pairs_for_detection,
)
from transfer_neurons.data.storage import ScaledArrayWriter, read_scaled
from transfer_neurons.detection.centroids import type1_centroids, type2_centroids
from transfer_neurons.model.adapters import adapter_for
from transfer_neurons.model.batching import length_sorted_batches
from transfer_neurons.model.hooks import HookSession, capture_states

SENTENCES = [f"Sentence number {i} is here." for i in range(11)]


def test_scaled_float16_keeps_values_beyond_float16_range(tmp_path):
    block = np.array([[[1e5, -3e4, 0.5], [0.0, 0.0, 0.0]]], dtype=np.float32)  # [layer, row, feature]
    writer = ScaledArrayWriter(tmp_path, "x", 1, 2, 3)
    writer.write([0, 1], block)
    writer.close()
    restored = read_scaled(tmp_path, "x")
    assert np.isfinite(restored).all()
    np.testing.assert_allclose(restored, block, rtol=1e-3, atol=1e-3 * 1e5)
    assert np.load(tmp_path / "x.npy").dtype == np.float16


def test_dump_matches_a_direct_forward_pass(tmp_path, loaded):
    adapter = loaded.adapter
    meta = dump_activations(loaded, SENTENCES, tmp_path, batch_size=4, max_batch_tokens=40)
    assert meta["n_sentences"] == len(SENTENCES)
    dump = Dump(tmp_path)
    direct = last_token_states(loaded, SENTENCES)
    for layer in (0, adapter.facts.n_layers - 1):
        for name in ("layer_output", "residual_pre_mlp", "neuron_activations"):
            expected = getattr(direct, name)[layer].numpy()
            np.testing.assert_allclose(dump.layer(name, layer), expected, atol=2e-3 * np.abs(expected).max(), rtol=0)
        np.testing.assert_allclose(dump.write_scale(layer), direct.write_scale[layer].numpy(), rtol=1e-6)


def test_centroids_are_pair_average_and_target_mean():
    pivot = np.array([[[0.0, 2.0], [2.0, 0.0]]])  # [layer=1, pairs=2, d=2]
    target = np.array([[[2.0, 2.0], [4.0, 0.0]]])
    np.testing.assert_allclose(type1_centroids(pivot, target), [[2.0, 1.0]])
    np.testing.assert_allclose(type2_centroids(target), [[3.0, 1.0]])


def test_capture_without_forward_pass_fails(model):
    adapter = adapter_for(model)
    try:
        with capture_states(adapter):
            pass
    except RuntimeError as error:
        assert "no forward pass" in str(error)
    else:
        raise AssertionError("expected a RuntimeError")
    assert torch.is_grad_enabled()


LONG = " ".join(f"word{i}" for i in range(90)) + " and the end."  # far beyond the old 64-token default


def test_a_long_sentence_in_a_batch_gives_its_states_alone(loaded):
    batch = last_token_states(loaded, ["Short.", LONG, "A sentence of middling length here."])
    alone = last_token_states(loaded, [LONG])
    assert loaded.tokenizer(LONG)["input_ids"].__len__() > 64  # read whole: nothing is cut
    for name in ("layer_output", "neuron_activations"):
        np.testing.assert_allclose(getattr(batch, name)[:, 1], getattr(alone, name)[:, 0], atol=1e-4, rtol=1e-4)


def test_in_memory_dump_reads_like_the_dump_on_disk(tmp_path, loaded):
    dump_activations(loaded, SENTENCES, tmp_path, batch_size=3, max_batch_tokens=None)
    on_disk = Dump(tmp_path)
    in_memory = InMemoryDump.of(loaded, SENTENCES, batch_size=5, max_batch_tokens=None)
    assert in_memory.n_layers == on_disk.n_layers
    for layer in range(on_disk.n_layers):
        expected = in_memory.effective_activations(layer)
        np.testing.assert_allclose(on_disk.effective_activations(layer), expected, atol=2e-3 * np.abs(expected).max())


def test_length_sorted_batches_bound_sentences_and_padded_tokens():
    lengths = [5, 40, 3, 12, 12, 7, 90, 4]
    batches = length_sorted_batches(lengths, batch_size=3, max_batch_tokens=40)
    assert sorted(index for batch in batches for index in batch) == list(range(len(lengths)))
    for batch in batches:
        assert len(batch) <= 3
        assert len(batch) == 1 or len(batch) * max(lengths[i] for i in batch) <= 40
    assert [6] in batches  # longer than the budget: alone, not cut
    assert [lengths[i] for i in batches[0]] == [3, 4, 5]  # shortest first


def pairs(n: int, long_every: int | None = None) -> pl.DataFrame:
    texts = [LONG if long_every and i % long_every == 0 else f"Pair {i}." for i in range(n)]
    return pl.DataFrame({"id": [str(i) for i in range(n)], "split": "train", "pivot_text": texts,
                         "target_text": [f"Paar {i}." for i in range(n)]})  # fmt: skip


def test_pairs_over_max_tokens_are_dropped_not_cut(tokenizer):
    marked = pairs(40, long_every=20)  # 2 of 40 long: 5 %, allowed
    kept = pairs_for_detection(marked, tokenizer, max_tokens=64, what="ja/train")
    assert kept.filter(~pl.col("kept"))["id"].to_list() == ["0", "20"]
    assert pairs_for_detection(marked, tokenizer, max_tokens=None, what="ja/train")["kept"].all()


def test_losing_more_than_five_percent_of_a_split_names_the_option(tokenizer):
    with pytest.raises(ValueError, match=r"ja/train: 3 of 40 pairs .*runtime.max_tokens = 64"):
        pairs_for_detection(pairs(40, long_every=15), tokenizer, max_tokens=64, what="ja/train")


def pre_activation_module(adapter, layer: int):
    """Where the activation function's input comes out: its output is > 0 exactly where the input is
    (SiLU and GELU are positive only for positive inputs)."""
    mlp = adapter.layers()[layer].mlp
    return mlp.gate_proj if adapter.facts.gated_mlp else mlp.dense_h_to_4h


def test_active_counts_are_positive_gate_inputs_over_language_tokens(tmp_path, loaded):
    adapter, tokenizer = loaded.adapter, loaded.tokenizer
    meta = dump_activations(loaded, SENTENCES, tmp_path, batch_size=4, max_batch_tokens=None)
    counts, n_tokens = Dump(tmp_path).active_counts()
    expected = np.zeros_like(counts)
    for sentence in SENTENCES:
        ids = tokenizer(sentence)["input_ids"]
        keep = torch.tensor([token not in tokenizer.all_special_ids for token in ids])  # no BOS
        inputs = {}
        with HookSession(adapter) as session, torch.no_grad():
            for layer in range(adapter.facts.n_layers):
                session.observe(pre_activation_module(adapter, layer), lambda module, args, output, layer=layer,
                                inputs=inputs: inputs.__setitem__(layer, output[0]))  # fmt: skip
            loaded.model(torch.tensor([ids]))
        for layer, values in inputs.items():
            expected[layer] += ((values > 0) & keep[:, None]).sum(dim=0).numpy()
    assert (
        n_tokens
        == meta["counted_tokens"]
        == sum(
            sum(token not in tokenizer.all_special_ids for token in tokenizer(sentence)["input_ids"])
            for sentence in SENTENCES
        )
    )
    np.testing.assert_array_equal(counts, expected)

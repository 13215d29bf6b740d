import numpy as np
import torch

from transfer_neurons.data.dumps import Dump, dump_activations, last_token_states
from transfer_neurons.data.storage import ScaledArrayWriter, read_scaled
from transfer_neurons.detection.centroids import type1_centroids, type2_centroids
from transfer_neurons.model.adapters import adapter_for
from transfer_neurons.model.hooks import capture_states

SENTENCES = [f"Sentence number {i} is here." for i in range(11)]


def test_scaled_float16_keeps_values_beyond_float16_range(tmp_path):
    block = np.array([[[1e5, -3e4, 0.5], [0.0, 0.0, 0.0]]], dtype=np.float32)  # [layer, row, feature]
    writer = ScaledArrayWriter(tmp_path, "x", 1, 2, 3)
    writer.write(0, block)
    writer.close()
    restored = read_scaled(tmp_path, "x")
    assert np.isfinite(restored).all()
    np.testing.assert_allclose(restored, block, rtol=1e-3, atol=1e-3 * 1e5)
    assert np.load(tmp_path / "x.npy").dtype == np.float16


def test_dump_matches_a_direct_forward_pass(tmp_path, loaded):
    adapter = loaded.adapter
    meta = dump_activations(loaded, SENTENCES, tmp_path, batch_size=4, max_tokens=5)
    assert meta["n_truncated"] == len(SENTENCES)  # every sentence is longer than 5 tokens
    dump = Dump(tmp_path)
    direct, _ = last_token_states(loaded, SENTENCES, max_tokens=5)
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

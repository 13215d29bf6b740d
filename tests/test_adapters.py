import pytest
import torch
from torch import nn

from transfer_neurons.model.adapters import UnsupportedArchitectureError, adapter_for
from transfer_neurons.model.batching import tokenize
from transfer_neurons.model.hooks import capture_states

SENTENCES = ["The cat sleeps on the sofa.", "猫はソファで寝ています。", "Waar is het station?"]


def run_capture(model, tokenizer, last_token_only=True):
    adapter = adapter_for(model)
    batch = tokenize(tokenizer, SENTENCES)
    with torch.no_grad(), capture_states(adapter, last_token_only=last_token_only) as captured:
        model(**batch.model_inputs(model))
    return adapter, batch, captured["states"]


def test_decomposition_reproduces_mlp_contribution(model, tokenizer):
    adapter, batch, states = run_capture(model, tokenizer, last_token_only=False)
    real = batch.attention_mask.bool()
    for layer in range(adapter.facts.n_layers):
        writes = adapter.write_vectors(layer)
        summed = states.write_scale[layer][..., None] * (states.neuron_activations[layer] @ writes)
        bias = adapter.mlp_bias(layer)
        if bias is not None:
            summed = summed + bias
        torch.testing.assert_close(summed[real], states.mlp_contribution[layer][real], atol=1e-5, rtol=1e-5)


def test_residual_plus_writes_is_layer_output(model, tokenizer):
    """r + sum_i s a_i v_i (+ b) equals the layer's real output at the last token."""
    adapter, _, states = run_capture(model, tokenizer)
    for layer in range(adapter.facts.n_layers):
        rebuilt = states.residual_pre_mlp[layer] + states.write_scale[layer][:, None] * (
            states.neuron_activations[layer] @ adapter.write_vectors(layer)
        )
        bias = adapter.mlp_bias(layer)
        rebuilt = rebuilt if bias is None else rebuilt + bias
        torch.testing.assert_close(rebuilt, states.layer_output[layer], atol=1e-5, rtol=1e-5)


def test_last_layer_output_is_raw_not_final_normed(model, tokenizer):
    adapter, batch, states = run_capture(model, tokenizer)
    with torch.no_grad():
        final = model(**batch.model_inputs(model), output_hidden_states=True).hidden_states[-1][:, -1]
    assert not torch.allclose(states.layer_output[-1], final, atol=1e-4)


def test_left_padding_does_not_change_last_token_states(model, tokenizer):
    _, _, batched = run_capture(model, tokenizer)
    adapter = adapter_for(model)
    for row, sentence in enumerate(SENTENCES):
        single = tokenize(tokenizer, [sentence])
        with torch.no_grad(), capture_states(adapter) as captured:
            model(**single.model_inputs(model))
        torch.testing.assert_close(
            captured["states"].layer_output[:, 0], batched.layer_output[:, row], atol=1e-4, rtol=1e-4
        )


def test_facts_describe_the_model(model):
    facts = adapter_for(model).facts
    assert facts.n_layers == 4
    assert facts.d_model == 32
    assert facts.d_mlp in {48, 128}


def test_unsupported_architecture_names_supported_families():
    class TinyGPT(nn.Module):
        config = None

    with pytest.raises(UnsupportedArchitectureError, match="LlamaForCausalLM"):
        adapter_for(TinyGPT())


def test_input_projection_rows_feed_their_neuron(model, tokenizer):
    """Zeroing row i of every input projection (and its bias) sets neuron i to act(0) and leaves others alone."""
    adapter = adapter_for(model)
    layer, neuron = 1, 5
    _, batch, before = run_capture(model, tokenizer, last_token_only=False)
    with torch.no_grad():
        for projection in adapter.input_projections(layer):
            assert projection.weight.shape == (adapter.facts.d_mlp, adapter.facts.d_model)
            projection.weight[neuron] = 0.0
            if projection.bias is not None:
                projection.bias[neuron] = 0.0
    _, _, after = run_capture(model, tokenizer, last_token_only=False)
    real = batch.attention_mask.bool()
    # Gated: act(gate = 0) * (up = 0) = 0; otherwise act(0).
    zero_input = 0.0 if adapter.facts.gated_mlp else adapter.activation_function(layer)(torch.zeros(1)).item()
    changed = after.neuron_activations[layer][real][:, neuron]
    torch.testing.assert_close(changed, torch.full_like(changed, zero_input))
    assert not torch.allclose(before.neuron_activations[layer][real][:, neuron], changed)
    others = torch.arange(adapter.facts.d_mlp) != neuron
    torch.testing.assert_close(
        after.neuron_activations[layer][real][:, others], before.neuron_activations[layer][real][:, others]
    )


def test_mlp_module_names_are_the_native_paths(model):
    adapter = adapter_for(model)
    names = adapter.mlp_module_names(2)
    roles = list(adapter.named_input_projections(2))
    assert list(names) == [*roles, "down"]
    assert roles == (["gate", "up"] if adapter.facts.gated_mlp else ["in"])
    for role, module in {**adapter.named_input_projections(2), "down": adapter.down_projection(2)}.items():
        assert model.get_submodule(names[role]) is module
        assert ".2." in names[role]
    assert names["down"].rsplit(".", 1)[1] in {"down_proj", "dense_4h_to_h"}


def test_input_projection_rows_are_the_whole_preactivation(model, tokenizer):
    """Copying rows j onto rows i of every input projection makes neuron i compute neuron j.

    Unlike zeroing (act(0) * up = 0 whatever up is), this fails if any input projection is missing.
    """
    adapter = adapter_for(model)
    layer, neuron, source = 2, 3, 7
    _, batch, before = run_capture(model, tokenizer, last_token_only=False)
    with torch.no_grad():
        for projection in adapter.input_projections(layer):
            projection.weight[neuron] = projection.weight[source]
            if projection.bias is not None:
                projection.bias[neuron] = projection.bias[source]
    _, _, after = run_capture(model, tokenizer, last_token_only=False)
    real = batch.attention_mask.bool()
    acts = after.neuron_activations[layer][real]
    torch.testing.assert_close(acts[:, neuron], acts[:, source])
    torch.testing.assert_close(acts[:, source], before.neuron_activations[layer][real][:, source])

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

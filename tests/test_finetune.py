import json

import pytest
import torch
from safetensors import safe_open

from tests.tiny import TOKENIZER_TEXT, tiny_model
from transfer_neurons.evaluation.finetune import (
    CHECKPOINT_FILE,
    DELTA_FILE,
    NeuronDelta,
    TrainingSettings,
    apply_delta,
    lora_config_matching,
    lora_module_ranks,
    step_rows,
    train,
    trainable_parameter_count,
)
from transfer_neurons.model.adapters import adapter_for
from transfer_neurons.model.batching import tokenize

FAMILIES = ["llama", "gemma3", "bloom", "gpt_neox"]
NEURONS = {1: [3, 5, 17], 3: [0, 40]}
SETTINGS = TrainingSettings(steps=4, learning_rate=0.05, batch_size=4, seed=3, log_every=2, checkpoint_every=2)


class StoppedError(RuntimeError):
    pass


def stop_at(step_to_fail: int):
    def on_step(step, record):
        if step == step_to_fail:
            raise StoppedError(f"stopped at step {step}")

    return on_step


def logits(model, tokenizer):
    batch = tokenize(tokenizer, TOKENIZER_TEXT[:4])
    with torch.no_grad():
        return model(**batch.model_inputs(model)).logits


def saved_tensors(path):
    with safe_open(str(path), framework="pt") as handle:
        return {key: handle.get_tensor(key) for key in handle.keys()}, handle.metadata()


def mlp_weights(adapter, layer):
    """{native weight name: (dim of the neuron index)} for one layer's MLP."""
    names = adapter.mlp_module_names(layer)
    return {f"{path}.weight": (1 if role == "down" else 0) for role, path in names.items()}


@pytest.mark.parametrize("family", FAMILIES)
def test_only_the_chosen_rows_and_columns_change(family, tokenizer, tmp_path):
    model = tiny_model(family)
    before = {name: parameter.detach().clone() for name, parameter in model.named_parameters()}
    train(model, tokenizer, TOKENIZER_TEXT, NEURONS, SETTINGS, tmp_path, progress=False)
    adapter = adapter_for(model)
    chosen = {name: (dim, NEURONS[layer]) for layer in NEURONS for name, dim in mlp_weights(adapter, layer).items()}
    after = dict(model.named_parameters())
    assert sorted(after) == sorted(before)  # the parametrizations are gone, the names are the native ones
    for name, parameter in after.items():
        assert parameter.requires_grad, f"{name}: requires_grad not restored"
        if name not in chosen:
            assert torch.equal(parameter, before[name]), f"{name} changed"
            continue
        dim, neurons = chosen[name]
        others = [index for index in range(parameter.shape[dim]) if index not in neurons]
        kept = torch.tensor(others)
        assert torch.equal(parameter.index_select(dim, kept), before[name].index_select(dim, kept)), name
        for neuron in neurons:
            moved = parameter.select(dim, neuron) != before[name].select(dim, neuron)
            assert moved.any(), f"{name}: neuron {neuron} did not change"
    assert len(chosen) == len(NEURONS) * (3 if adapter.facts.gated_mlp else 2)


@pytest.mark.parametrize("family", FAMILIES)
def test_only_the_deltas_are_trainable(family):
    model = tiny_model(family)
    adapter = adapter_for(model)
    delta = NeuronDelta(adapter, NEURONS)
    deltas = {id(parameter) for parameter in delta.parameters()}
    trainable = {id(parameter) for parameter in model.parameters() if parameter.requires_grad}
    assert trainable == deltas
    expected = trainable_parameter_count(NEURONS, adapter)
    assert delta.trainable_count == expected == trainable_parameter_count(NEURONS, adapter.facts)
    n_inputs = 2 if adapter.facts.gated_mlp else 1
    assert expected == 5 * (n_inputs + 1) * adapter.facts.d_model
    shapes = {key: tuple(parameter.shape) for key, parameter in delta.named_parameters().items()}
    assert shapes["layer.1.delta_out"] == (adapter.facts.d_model, 3)
    assert all(shapes[f"layer.3.delta_in.{role}"] == (2, adapter.facts.d_model) for role in delta.roles)
    delta.remove()
    assert all(parameter.requires_grad for parameter in model.parameters())


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("kind", ["neurons", "lora"])
def test_saved_delta_reproduces_the_trained_model(family, kind, tokenizer, tmp_path):
    model = tiny_model(family)
    base_logits = logits(model, tokenizer)
    trainable = NEURONS
    if kind == "lora":
        trainable, _ = lora_config_matching(model, trainable_parameter_count(NEURONS, adapter_for(model)))
    result = train(model, tokenizer, TOKENIZER_TEXT, trainable, SETTINGS, tmp_path, progress=False)
    trained_logits = logits(model, tokenizer)
    assert not torch.allclose(trained_logits, base_logits, atol=1e-4)
    assert result.delta_path == tmp_path / DELTA_FILE
    assert not (tmp_path / CHECKPOINT_FILE).exists()

    tensors, metadata = saved_tensors(result.delta_path)
    assert metadata["kind"] == kind and metadata["architecture"] == type(model).__name__
    float_count = sum(tensor.numel() for tensor in tensors.values() if tensor.is_floating_point())
    assert float_count == result.trainable_count  # the deltas and nothing else
    if kind == "neurons":
        assert json.loads(metadata["layers"]) == sorted(NEURONS)
        assert tensors["layer.1.neurons"].tolist() == NEURONS[1]

    rebuilt = apply_delta(tiny_model(family), result.delta_path)
    assert type(rebuilt) is type(model)
    torch.testing.assert_close(logits(rebuilt, tokenizer), trained_logits, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")
def test_lora_count_equals_the_neuron_sets_where_achievable(family):
    from peft import get_peft_model

    model = tiny_model(family)
    facts = adapter_for(model).facts
    per_rank = facts.d_model + facts.d_mlp  # llama, gemma3: 80 (96 per neuron); bloom, gpt_neox: 160 (64)
    per_neuron = trainable_parameter_count({0: [0]}, facts)
    # The fewest neurons whose count d_model + d_mlp divides: 5 for every tiny family.
    n_exact = next(n for n in range(1, 100) if n * per_neuron % per_rank == 0)
    exact = {
        layer: list(range(layer * 10, layer * 10 + n)) for layer, n in [(0, n_exact - n_exact // 2), (2, n_exact // 2)]
    }
    target = trainable_parameter_count(exact, facts)
    config, achieved = lora_config_matching(model, target)
    assert achieved == target
    peft_model = get_peft_model(model, config)
    assert peft_model.get_nb_trainable_parameters()[0] == target

    inexact = trainable_parameter_count({1: [0, 1, 2]}, facts)  # 288 of 80s, or 192 of 160s
    assert inexact % per_rank
    _, nearest = lora_config_matching(tiny_model(family), inexact)
    assert nearest % per_rank == 0 and abs(nearest - inexact) < per_rank / 2


def test_lora_ranks_spread_evenly_over_the_chosen_layers():
    adapter = adapter_for(tiny_model("llama"))
    per_rank = 32 + 48
    ranks = lora_module_ranks(adapter, 7 * per_rank, layers=[1, 2])  # 7 units over 6 modules
    assert sum(ranks.values()) == 7
    assert sorted(ranks.values()) == [1, 1, 1, 1, 1, 2]
    assert all(".layers.1." in path or ".layers.2." in path for path in ranks)
    assert sum(lora_module_ranks(adapter, 1).values()) == 1  # never zero trainable parameters
    with pytest.raises(ValueError, match="subset"):
        lora_module_ranks(adapter, per_rank, layers=[4])


@pytest.mark.parametrize("family", ["llama", "bloom"])
@pytest.mark.parametrize("kind", ["neurons", "lora"])
def test_a_resumed_run_ends_where_an_uninterrupted_one_does(family, kind, tokenizer, tmp_path):
    settings = TrainingSettings(steps=5, learning_rate=0.05, batch_size=3, seed=1, checkpoint_every=2)

    def trainable(model):
        if kind == "neurons":
            return NEURONS
        return lora_config_matching(model, 400)[0]

    whole = train(tiny_model(family), tokenizer, TOKENIZER_TEXT, trainable(tiny_model(family)), settings,
                  tmp_path / "whole", progress=False)  # fmt: skip

    work_dir = tmp_path / "stopped"
    stopped = tiny_model(family)
    base = {name: parameter.detach().clone() for name, parameter in stopped.named_parameters()}
    with pytest.raises(StoppedError):
        train(stopped, tokenizer, TOKENIZER_TEXT, trainable(stopped), settings, work_dir, progress=False,
              on_step=stop_at(3))  # fmt: skip
    assert (work_dir / CHECKPOINT_FILE).exists()
    assert not (work_dir / DELTA_FILE).exists()
    assert list(work_dir.glob(".*.tmp")) == []
    # An interrupted run leaves the model's weights as they were.
    assert sorted(name for name, _ in stopped.named_parameters()) == sorted(base)
    assert all(torch.equal(parameter, base[name]) for name, parameter in stopped.named_parameters())

    resumed = train(tiny_model(family), tokenizer, TOKENIZER_TEXT, trainable(tiny_model(family)), settings,
                    work_dir, progress=False)  # fmt: skip
    assert resumed.resumed_from_step == 2 and whole.resumed_from_step is None
    assert [entry["step"] for entry in resumed.log] == [1, 2, 3, 4, 5]
    assert [entry["loss"] for entry in resumed.log] == pytest.approx([entry["loss"] for entry in whole.log], abs=1e-6)
    whole_tensors, _ = saved_tensors(whole.delta_path)
    resumed_tensors, _ = saved_tensors(resumed.delta_path)
    assert sorted(whole_tensors) == sorted(resumed_tensors)
    for key, tensor in whole_tensors.items():
        torch.testing.assert_close(resumed_tensors[key], tensor, atol=1e-6, rtol=0)


def test_a_checkpoint_of_other_settings_is_not_resumed(tokenizer, tmp_path):
    first = TrainingSettings(steps=4, learning_rate=0.05, batch_size=3, seed=1, checkpoint_every=2)
    with pytest.raises(StoppedError):
        train(tiny_model("llama"), tokenizer, TOKENIZER_TEXT, NEURONS, first, tmp_path, progress=False,
              on_step=stop_at(3))  # fmt: skip
    assert (tmp_path / CHECKPOINT_FILE).exists()
    second = TrainingSettings(steps=4, learning_rate=0.01, batch_size=3, seed=1, checkpoint_every=2)
    result = train(tiny_model("llama"), tokenizer, TOKENIZER_TEXT, NEURONS, second, tmp_path, progress=False)
    assert result.resumed_from_step is None
    assert any("other settings" in note for note in result.notes)
    fresh = train(tiny_model("llama"), tokenizer, TOKENIZER_TEXT, NEURONS, second, tmp_path / "fresh", progress=False)
    assert [entry["loss"] for entry in result.log] == [entry["loss"] for entry in fresh.log]


def test_a_previous_delta_is_gone_while_a_run_is_unfinished(tokenizer, tmp_path):
    train(tiny_model("llama"), tokenizer, TOKENIZER_TEXT, NEURONS, SETTINGS, tmp_path, progress=False)
    assert (tmp_path / DELTA_FILE).exists()
    seen = []

    def look(step, record):
        seen.append((tmp_path / DELTA_FILE).exists())
        if step == 2:
            raise StoppedError

    with pytest.raises(StoppedError):
        train(
            tiny_model("llama"), tokenizer, TOKENIZER_TEXT, {0: [1]}, SETTINGS, tmp_path, progress=False, on_step=look
        )
    assert seen == [False, False]
    assert not (tmp_path / DELTA_FILE).exists()


def test_micro_batches_give_the_gradient_of_the_whole_step(tokenizer, tmp_path):
    """Splitting each step by max_batch_tokens must not change the trained deltas."""
    whole = train(tiny_model("gemma3"), tokenizer, TOKENIZER_TEXT, NEURONS, SETTINGS, tmp_path / "a", progress=False)
    split_settings = TrainingSettings(**{**SETTINGS.__dict__, "max_batch_tokens": 12})
    split = train(tiny_model("gemma3"), tokenizer, TOKENIZER_TEXT, NEURONS, split_settings, tmp_path / "b",
                  progress=False)  # fmt: skip
    whole_tensors, _ = saved_tensors(whole.delta_path)
    split_tensors, _ = saved_tensors(split.delta_path)
    for key, tensor in whole_tensors.items():
        torch.testing.assert_close(split_tensors[key], tensor, atol=1e-5, rtol=1e-5)
    assert [entry["loss"] for entry in split.log] == pytest.approx([entry["loss"] for entry in whole.log], abs=1e-5)


def test_each_epoch_reads_every_sentence_once():
    rows = [step_rows(10, 4, seed=7, step=step) for step in range(6)]
    assert [len(chunk) for chunk in rows] == [4, 4, 2, 4, 4, 2]
    assert sorted(sum(rows[:3], [])) == list(range(10)) == sorted(sum(rows[3:], []))
    assert rows[:3] != rows[3:]
    assert step_rows(10, 4, seed=7, step=4) == rows[4]


def test_bad_neuron_sets_and_files_are_refused(tokenizer, tmp_path):
    adapter = adapter_for(tiny_model("llama"))
    with pytest.raises(ValueError, match="layer 1 lists neurons \\[3\\] more than once"):
        trainable_parameter_count({1: [3, 3]}, adapter)
    with pytest.raises(ValueError, match="outside 0..47"):
        trainable_parameter_count({1: [48]}, adapter)
    with pytest.raises(ValueError, match="layer 9"):
        trainable_parameter_count({9: [1]}, adapter)
    result = train(tiny_model("llama"), tokenizer, TOKENIZER_TEXT, NEURONS, SETTINGS, tmp_path, progress=False)
    with pytest.raises(ValueError, match="LlamaForCausalLM.*BloomForCausalLM"):
        apply_delta(tiny_model("bloom"), result.delta_path)

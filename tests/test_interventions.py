import copy

import polars as pl
import pytest
import torch

from transfer_neurons.evaluation.conditions import (
    BaselineSettings,
    build_conditions,
    condition_names,
    condition_neurons,
)
from transfer_neurons.evaluation.qa import answers_by_run
from transfer_neurons.model.adapters import adapter_for
from transfer_neurons.model.batching import tokenize
from transfer_neurons.model.hooks import HookSession, NeuronEdit, scaled_neurons

SENTENCES = ["The cat sleeps on the sofa.", "猫は寝ています。", "Dov'è la stazione?"]
CHOSEN = {0: [1, 5, 7], 2: [0, 3]}


def logits(model, tokenizer):
    batch = tokenize(tokenizer, SENTENCES)
    with torch.no_grad():
        return model(**batch.model_inputs(model)).logits


def test_hook_deactivation_equals_zeroed_down_projection_columns(model, tokenizer):
    adapter = adapter_for(model)
    with scaled_neurons(adapter, CHOSEN, factor=0.0, positions="prompt"):
        hooked = logits(model, tokenizer)
    edited = copy.deepcopy(model)
    edited_adapter = adapter_for(edited)
    with torch.no_grad():
        for layer, neurons in CHOSEN.items():
            edited_adapter.down_projection(layer).weight[:, neurons] = 0
    torch.testing.assert_close(hooked, logits(edited, tokenizer), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(hooked, logits(model, tokenizer), atol=1e-5)


def test_hooks_are_removed_after_the_context(model, tokenizer):
    before = logits(model, tokenizer)
    with scaled_neurons(adapter_for(model), CHOSEN, factor=0.0):
        pass
    torch.testing.assert_close(logits(model, tokenizer), before)


def test_last_token_mode_leaves_earlier_positions_alone(model, tokenizer):
    normal = logits(model, tokenizer)
    with scaled_neurons(adapter_for(model), CHOSEN, factor=0.0, positions="last"):
        last_only = logits(model, tokenizer)
    real = tokenize(tokenizer, SENTENCES).attention_mask.bool()[:, :-1]
    # Pad positions are excluded: a fully masked query row may attend anywhere.
    torch.testing.assert_close(last_only[:, :-1][real], normal[:, :-1][real])
    assert not torch.allclose(last_only[:, -1], normal[:, -1], atol=1e-6)


def seen_positions(model, mode):
    """Record which positions the hook scaled during a 3-token generation."""
    adapter = adapter_for(model)
    scaled = []

    def record(module, args):
        scaled.append(args[0][0, :, 1].clone())

    prompt = torch.tensor([[1, 5, 6, 7]])
    with scaled_neurons(adapter, {0: [1]}, factor=0.0, positions=mode) as session:
        session.observe(adapter.down_projection(0), record, before=True)
        model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=3, do_sample=False,
                       min_new_tokens=3, pad_token_id=0)  # fmt: skip
    return [(step == 0).tolist() for step in scaled]


@pytest.mark.parametrize(
    ("mode", "expected_prompt", "expected_steps"),
    [
        ("prompt", [True, True, True, True], [False]),
        ("prompt_last", [False, False, False, True], [False]),
        ("last", [False, False, False, True], [True]),
        ("all", [True, True, True, True], [True]),
    ],
)
def test_position_modes_during_generation(mode, expected_prompt, expected_steps):
    from tests.tiny import tiny_model

    steps = seen_positions(tiny_model("llama"), mode)
    assert steps[0] == expected_prompt
    assert all(step == expected_steps for step in steps[1:])


def test_unknown_position_mode_is_rejected(model):
    with pytest.raises(ValueError, match="prompt_last"), scaled_neurons(adapter_for(model), CHOSEN, positions="first"):
        pass
    with pytest.raises(ValueError, match="unknown site"):
        HookSession(adapter_for(model)).site("attention", 0)


def top_table():
    rows = []
    for label, count in (("2", 2), ("4", 4)):
        for neuron_type, layers in (("type1", [0, 1]), ("type2", [2, 3])):
            for rank in range(count):
                rows.append({"top_n_label": label, "top_n": count, "neuron_type": neuron_type,
                             "layer": layers[rank % 2], "neuron": rank, "score": 1.0, "rank": rank + 1})  # fmt: skip
    return pl.DataFrame(rows)


BASELINES = BaselineSettings(seeds=(0, 1, 2), sweep_seeds=(0, 1, 2), magnitude_matched=False)


def test_conditions_have_matching_counts_and_exclude_transfer_neurons():
    candidates = {"type1": [0, 1], "type2": [2, 3]}
    conditions = build_conditions(top_table(), candidates, d_mlp=16, main_label="4", baselines=BASELINES)
    names = condition_names(conditions)
    assert names[0] == "normal"
    assert {"type1", "type2", "random_type1_s2", "layer_matched_type2_s0", "type1@2", "random_type1@2_s0"} <= set(names)
    transfer = {(layer, neuron) for layer, ns in condition_neurons(conditions, "type1").items() for neuron in ns}
    for seed in (0, 1, 2):
        drawn = condition_neurons(conditions, f"random_type1_s{seed}")
        pairs = {(layer, neuron) for layer, ns in drawn.items() for neuron in ns}
        assert len(pairs) == 4
        assert not pairs & transfer
        assert set(drawn) <= {0, 1}
        matched = condition_neurons(conditions, f"layer_matched_type1_s{seed}")
        assert {layer: len(ns) for layer, ns in matched.items()} == {
            layer: len(ns) for layer, ns in condition_neurons(conditions, "type1").items()
        }
    assert condition_neurons(conditions, "random_type1_s0") != condition_neurons(conditions, "random_type1_s1")
    again = build_conditions(top_table(), candidates, d_mlp=16, main_label="4", baselines=BASELINES)
    assert again.equals(conditions)


@pytest.mark.parametrize("mode", ["prompt_last", "last"])
def test_shared_prompt_prefix_gives_the_answers_of_full_generation(family, loaded, mode):
    prompts = ["Q: Where is the station?\nA:", "Q: 猫は?\nA:", "Q: Wie schreef Max Havelaar en waarom?\nA:"]
    every_neuron = list(range(loaded.facts.d_mlp))
    runs = {"normal": NeuronEdit(), "amplified": NeuronEdit({0: every_neuron, 1: every_neuron}, -40.0, mode)}

    def answers(share_prefix):
        return answers_by_run(loaded, prompts, runs, max_new_tokens=5, stop="newline", share_prefix=share_prefix)

    shared = answers(True)
    assert shared == answers(False)
    if family != "bloom":  # tiny random BLOOM answers every prompt with one repeated token, whatever is scaled
        assert shared["amplified"] != shared["normal"]  # the intervention reached the answers

"""The QA analysis: conditions as rows of shared generation passes, the paper's prompts and decoding."""

import polars as pl
import pytest

from transfer_neurons.evaluation.qa import answer_texts, continuations_by_run, prompt_template, qa_runs
from transfer_neurons.model.hooks import NeuronEdit

PROMPTS = ["Where is the station? Answer: ", "猫は? 答え: ", "Wie schreef Max Havelaar en waarom? Antwoord: "]


def runs_of(loaded):
    every_neuron = list(range(loaded.facts.d_mlp))
    return {
        "normal": NeuronEdit(),
        "early/prompt": NeuronEdit({0: every_neuron}, -30.0, "prompt"),
        "early/prompt_last": NeuronEdit({0: every_neuron}, -30.0, "prompt_last"),
        "late/prompt": NeuronEdit({1: every_neuron[::2], 3: every_neuron[1::2]}, 4.0, "prompt"),
        "late/prompt_last": NeuronEdit({3: every_neuron}, 0.0, "prompt_last"),
    }


def test_runs_stacked_as_rows_give_the_answers_of_each_run_alone(family, loaded):
    runs = runs_of(loaded)
    stacked = continuations_by_run(loaded, PROMPTS, runs, max_new_tokens=4, max_batch_tokens=None)
    for name, edit in runs.items():
        alone = continuations_by_run(loaded, PROMPTS, {name: edit}, max_new_tokens=4, max_batch_tokens=None)
        assert alone[name] == stacked[name], name
    if family not in ("bloom", "cohere"):  # their tiny random models repeat one token whatever is scaled
        assert any(stacked[name] != stacked["normal"] for name in runs)  # the edits reached the answers


def test_a_small_token_budget_splits_runs_and_prompts_without_changing_answers(loaded):
    runs = runs_of(loaded)
    wide = continuations_by_run(loaded, PROMPTS, runs, max_new_tokens=4, max_batch_tokens=None)
    narrow = continuations_by_run(loaded, PROMPTS, runs, max_new_tokens=4, max_batch_tokens=40)  # a prompt a pass
    assert narrow == wide


def test_fixed_length_decoding_keeps_every_token_and_newline_mode_the_first_line(tokenizer):
    continuation = [tokenizer(" Rome\nParis", add_special_tokens=False)["input_ids"] + [tokenizer.pad_token_id]]
    whole = answer_texts(tokenizer, continuation, "none")[0]
    assert whole == " Rome\nParis"  # as decoded, padding dropped, nothing stripped
    assert answer_texts(tokenizer, continuation, "newline") == ["Rome"]


def test_prompt_templates_per_language_and_a_missing_language_named():
    template = {"ja": "{question}? 答え: ", "nl": "{question}? Antwoord: "}
    assert prompt_template(template, "nl").format(question="Wie") == "Wie? Antwoord: "
    assert prompt_template("Q: {question}\\nA:", "ko") == "Q: {question}\\nA:"
    with pytest.raises(ValueError, match="no prompt for language 'ko'"):
        prompt_template(template, "ko")


def test_the_normal_condition_runs_once_for_every_position_mode():
    conditions = pl.DataFrame(
        {"condition": ["normal", "type1", "type1"], "layer": [None, 0, 1], "neuron": [None, 3, 4]},
        schema={"condition": pl.String, "layer": pl.Int32, "neuron": pl.Int32},
    )
    runs, run_of = qa_runs(conditions, ["prompt", "prompt_last"], 0.0)
    assert sorted(runs) == ["normal", "type1/prompt", "type1/prompt_last"]
    assert run_of["normal", "prompt"] == run_of["normal", "prompt_last"] == "normal"
    assert runs["type1/prompt_last"].positions == "prompt_last" and runs["type1/prompt"].scaled == {0: [3], 1: [4]}

"""The logit lens: logits from the residual stream, the answer's first token, conditions as rows, the summaries
and claims on synthetic tables, and the scripts of the neurons' promoted tokens."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from tokenizers.processors import TemplateProcessing
from transformers import PreTrainedTokenizerFast

from tests.tiny import tiny_model
from transfer_neurons.evaluation.conditions import CONDITION_SCHEMA, InterventionSettings, condition_runs
from transfer_neurons.evaluation.logit_lens import (
    LENS_SCHEMA,
    LogitLensSettings,
    answer_first_tokens,
    condition_neuron_scripts,
    continuation_ids,
    evaluate_logit_lens,
    lens_by_run,
    lens_log_probabilities,
    probabilities_by_run,
)
from transfer_neurons.evaluation.neuron_tokens import in_language_scripts, neuron_lens, script_shares, token_scripts
from transfer_neurons.model.adapters import adapter_for
from transfer_neurons.model.batching import tokenize
from transfer_neurons.model.hooks import NeuronEdit, capture_states
from transfer_neurons.model.logits import output_logits, residual_logits, unembedded
from transfer_neurons.reporting.analyses import logit_lens as report
from transfer_neurons.reporting.claims import CONTRADICTED, INCONCLUSIVE, SUPPORTED, claim_row
from transfer_neurons.reporting.registry import CLAIMS, FigureContext, FigureSettings

PROMPTS = ["Where is the station? Answer: ", "駅はどこですか？ 答え: ", "De kat slaapt? Antwoord: "]
TARGETS = np.array([[40, 41], [42, 43], [44, 45]])


# --- logits from the residual stream -----------------------------------------------------------------------
def test_the_lens_at_the_last_layer_is_the_models_own_logits(family, model, tokenizer):
    adapter = adapter_for(model)
    with torch.no_grad():  # logits in the hundreds, where Gemma 2's soft-cap at 30 bites
        adapter.unembedding().weight.mul_(300.0)
    batch = tokenize(tokenizer, PROMPTS)
    last = adapter.facts.n_layers - 1
    with torch.no_grad(), capture_states(adapter, [last], last_token_only=False) as captured:
        logits = model(**batch.model_inputs(model)).logits
    raw = captured["states"].layer_output[0]  # [B, T, d_model], before the final norm
    real = batch.attention_mask.bool()
    if getattr(model.config, "final_logit_softcapping", None):  # the uncapped logits pass the cap
        assert unembedded(adapter, raw).abs().max() > 2 * model.config.final_logit_softcapping
    torch.testing.assert_close(residual_logits(adapter, raw)[real], logits[real], rtol=1e-5, atol=1e-4)
    # Where the family scales or caps its logits, the unembedding alone is not the model's logits.
    if family in ("gemma2", "cohere"):
        assert not torch.allclose(unembedded(adapter, raw)[real], logits[real], atol=1e-3)
    # And the lens's log-probabilities at the last prompt token are the model's log-softmax there.
    targets = torch.as_tensor(TARGETS)
    found = lens_log_probabilities(adapter, raw[None, :, -1], targets)[0]
    expected = logits[:, -1].log_softmax(-1).gather(1, targets)
    torch.testing.assert_close(found, expected, rtol=1e-5, atol=1e-4)


def test_output_logits_scale_and_cap_as_the_config_says():
    adapter = adapter_for(tiny_model("gemma2"))
    logits = torch.tensor([[-100.0, 0.0, 10.0, 100.0]])
    cap = adapter.config.final_logit_softcapping
    torch.testing.assert_close(output_logits(adapter, logits), torch.tanh(logits / cap) * cap)
    adapter = adapter_for(tiny_model("cohere"))
    torch.testing.assert_close(output_logits(adapter, logits), logits * adapter.config.logit_scale)
    adapter = adapter_for(tiny_model("llama"))
    assert torch.equal(output_logits(adapter, logits), logits)


def conditions_table() -> pl.DataFrame:
    """Normal; Type-1: 20 neurons of layers 0 and 1 each (enough to move a tiny model's logits); Type-2: one
    neuron of layer 3; a control: two neurons of layers 0 and 1."""
    type1 = [("type1", "transfer", "type1", "5", 40, None, layer, neuron) for layer in (0, 1) for neuron in range(20)]
    rows = [
        ("normal", "normal", None, None, None, None, None, None),
        *type1,
        ("type2", "transfer", "type2", "5", 1, None, 3, 7),
        ("magnitude_matched_type1_s0", "magnitude_matched", "type1", "5", 2, 0, 0, 25),
        ("magnitude_matched_type1_s0", "magnitude_matched", "type1", "5", 2, 0, 1, 26),
    ]
    return pl.DataFrame(rows, schema=CONDITION_SCHEMA, orient="row")


def test_the_normal_runs_last_layer_is_the_models_log_softmax_at_the_last_prompt_token(loaded):
    runs = {"normal": NeuronEdit()}
    found = lens_by_run(loaded, PROMPTS, TARGETS, runs, InterventionSettings(0.0, 8, None, "prompt"))["normal"]
    for row, prompt in enumerate(PROMPTS):  # each prompt alone: no padding
        batch = tokenize(loaded.tokenizer, [prompt])
        with torch.no_grad():
            logits = loaded.model(**batch.model_inputs(loaded.model)).logits[0, -1]
        expected = logits.log_softmax(-1)[torch.as_tensor(TARGETS[row])].numpy()
        np.testing.assert_allclose(found[-1, row], expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("positions", ["prompt", "prompt_last"])
def test_stacked_conditions_equal_each_condition_alone(loaded, positions):
    runs = condition_runs(conditions_table(), InterventionSettings(0.0, 8, None, positions))
    # A small token budget also splits the runs over several passes.
    together = lens_by_run(loaded, PROMPTS, TARGETS, runs, InterventionSettings(0.0, 8, 40, positions))
    for name, edit in runs.items():
        alone = lens_by_run(loaded, PROMPTS, TARGETS, {name: edit}, InterventionSettings(0.0, 1, None, positions))
        np.testing.assert_allclose(together[name], alone[name], rtol=0, atol=1e-5)
    # The deactivations change what the lens reads, by more than the tolerance above (Cohere's logit scale
    # leaves a tiny random model's distributions nearly uniform, so its changes are small).
    assert np.abs(together["type1"] - together["normal"]).max() > 1e-4
    # Below its first edited layer (3) Type-2's states are the normal run's, so its values are too.
    np.testing.assert_array_equal(together["type2"][:3], together["normal"][:3])


def test_a_layer_is_reused_only_where_its_states_are_the_references():
    adapter = adapter_for(tiny_model("llama"))
    normal = torch.randn(4, 2, 32, generator=torch.Generator().manual_seed(0))
    edited = normal.clone()
    edited[2:] += 1.0
    targets = torch.as_tensor(TARGETS[:2])
    found = probabilities_by_run(adapter, {"normal": normal, "edited": edited}, targets, "normal")
    torch.testing.assert_close(found["edited"][:2], found["normal"][:2])
    torch.testing.assert_close(found["edited"][2:], lens_log_probabilities(adapter, edited[2:], targets))
    assert not torch.allclose(found["edited"][2:], found["normal"][2:])


# --- the answer's first token --------------------------------------------------------------------------------
def hand_made_tokenizer() -> PreTrainedTokenizerFast:
    """Byte-level BPE whose only words are "Answer", ":", "Paris" and "Rome", each also with a leading space,
    so that a prompt's trailing space ("Ġ") merges with the answer ("ĠParis"), as Gemma's "▁" does."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {"<pad>": 0, "<bos>": 1, "<eos>": 2}
    vocab.update({char: 3 + index for index, char in enumerate(alphabet)})
    merges = []
    for word in ("Answer", "Paris", "Rome"):
        for end in range(2, len(word) + 1):
            merges.append((word[: end - 1], word[end - 1]))
        merges.append(("Ġ", word))
    for left, right in merges:
        vocab.setdefault(left + right, len(vocab))
    backend = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.post_processor = TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>")


def test_the_answer_continues_the_prompts_tokens_without_a_second_space():
    tokenizer = hand_made_tokenizer()
    ids = tokenizer.convert_tokens_to_ids
    # The prompt ends in its own space token; prompt and answer together merge it with the answer.
    assert tokenizer.convert_ids_to_tokens(tokenizer("Answer: ")["input_ids"])[-1] == "Ġ"
    assert tokenizer.convert_ids_to_tokens(tokenizer("Answer: Paris")["input_ids"])[-1] == "ĠParis"
    # The model has read "Ġ": the answer continues with "Paris", not "ĠParis" (a second space).
    assert continuation_ids(tokenizer, "Answer: ", "Paris") == [ids("Paris")]
    assert continuation_ids(tokenizer, "Answer: ", "Paris Rome") == [ids("Paris"), ids("ĠRome")]
    # Where the prompt's tokens are a prefix of the pair's, the answer's tokens are the rest.
    assert continuation_ids(tokenizer, "Answer:", " Paris Rome") == [ids("ĠParis"), ids("ĠRome")]
    assert continuation_ids(tokenizer, "Answer:", "Paris") == [ids("Paris")]


def test_first_tokens_of_both_answers_and_a_record_without_gold_text():
    tokenizer = hand_made_tokenizer()
    ids = tokenizer.convert_tokens_to_ids
    record = {"answers": {"it": [{"type": "entity", "text": "Rome", "aliases": []}],
                          "en": [{"type": "entity", "text": None, "aliases": ["Paris"]}]}}  # fmt: skip
    assert answer_first_tokens(tokenizer, "Answer: ", record, "it", "en") == (ids("Rome"), ids("Paris"))
    record["answers"]["en"] = [{"type": "unanswerable", "text": None, "aliases": []}]
    assert answer_first_tokens(tokenizer, "Answer: ", record, "it", "en") is None


# --- the evaluation on a tiny model ------------------------------------------------------------------------
def records() -> list[dict]:
    pairs = [("Dov'è la stazione", "stazione", "station"), ("Il gatto dorme", "gatto", "cat"),
             ("Dov'è il divano", "divano", "divano")]  # fmt: skip
    return [
        {"example_id": f"q{index}", "queries": {"it": question, "en": question},
         "answers": {"it": [{"type": "entity", "text": answer, "aliases": []}],
                     "en": [{"type": "entity", "text": english, "aliases": []}]}}
        for index, (question, answer, english) in enumerate(pairs)
    ]  # fmt: skip


def settings(threshold: float = 0.0) -> LogitLensSettings:
    return LogitLensSettings(threshold=threshold, kinds=("transfer", "magnitude_matched"), seeds=None, limit=None,
                             template={"it": "{question}? Risposta: "}, max_new_tokens=3, stop="none",
                             question_filter="paper", lens_tokens=4)  # fmt: skip


def test_the_lens_table_has_every_condition_question_layer_and_target(loaded):
    intervention = InterventionSettings(0.0, 8, None, "prompt")
    table = evaluate_logit_lens(loaded, records(), "it", conditions_table(), intervention, settings())
    n_layers = loaded.facts.n_layers
    assert table.height == 4 * 3 * n_layers * 2  # conditions x questions x layers x targets
    assert set(LENS_SCHEMA) <= set(table.columns) and {"kind", "neuron_type", "seed"} <= set(table.columns)
    np.testing.assert_allclose(table["probability"], np.exp(table["log_probability"]))
    same = table.filter(pl.col("example_id") == "q2")["same_token"].unique().to_list()
    assert same == [True]  # "divano" in both languages
    assert table["questions_asked"].unique().to_list() == [3]
    # Nothing reaches F1 1 on a random model: an empty table with the columns.
    empty = evaluate_logit_lens(loaded, records(), "it", conditions_table(), intervention, settings(1.0))
    assert empty.height == 0 and set(LENS_SCHEMA) <= set(empty.columns)


def test_every_deactivated_neuron_gets_its_script_shares(loaded):
    table = condition_neuron_scripts(loaded, conditions_table(), ["ja", "en"], n_tokens=4)
    assert table.height == (40 + 1 + 2) * 2  # (condition, neuron) pairs, two languages
    assert set(table["condition"].to_list()) == {"type1", "type2", "magnitude_matched_type1_s0"}
    lens = neuron_lens(loaded, pl.DataFrame({"layer": [0], "neuron": [3]}, schema={"layer": pl.Int32,
                                                                                   "neuron": pl.Int32}), 4)  # fmt: skip
    promoted = lens.filter(pl.col("direction") == "promoted")
    expected = np.mean([in_language_scripts(scripts, "ja") for scripts in promoted["script"].to_list()])
    found = table.filter((pl.col("layer") == 0) & (pl.col("neuron") == 3) & (pl.col("script_language") == "ja"))
    assert found["share"].to_list() == [pytest.approx(expected)] and found["n_tokens"].to_list() == [4]


# --- scripts of tokens ------------------------------------------------------------------------------------------
def test_token_scripts_and_language_shares():
    assert token_scripts(" Paris") == "Latin"
    assert token_scripts("東京です") == "Han+Kana"
    assert token_scripts("서울") == "Hangul"
    assert token_scripts(" 1969.") == ""
    assert token_scripts("Ωmega") == "Latin+other"
    assert in_language_scripts("Han+Kana", "ja") and in_language_scripts("Han", "ja")
    assert not in_language_scripts("Latin", "ja") and not in_language_scripts("", "en")
    lens = pl.DataFrame({"layer": [0] * 4 + [1] * 2, "neuron": [1] * 4 + [2] * 2,
                         "script": ["Latin", "Kana", "", "Han+Kana", "Hangul", "Latin"]})  # fmt: skip
    shares = script_shares(lens, ["ja", "en", "ko"])
    share = {(row["neuron"], row["script_language"]): row["share"] for row in shares.iter_rows(named=True)}
    assert share[1, "ja"] == 0.5 and share[1, "en"] == 0.25 and share[1, "ko"] == 0.0
    assert share[2, "ko"] == 0.5 and share[2, "ja"] == 0.0


# --- summaries and claims on a synthetic table --------------------------------------------------------------
N_LAYERS, MIDDLE, LAST = 10, range(4, 8), 9  # depth (layer + 1) / 10 in [0.5, 0.9): layers 4-7


def synthetic_lens() -> pl.DataFrame:
    """Ten questions in ja: the normal run puts P(English) 0.2 and P(L2) 0.05 in the middle layers and 0.01, 0.8
    at the last one; Type-1 lowers the English middle to 0.02, its control (two seeds) leaves it at 0.2 and
    0.1 (mean of logs: ln 0.2 and ln 0.1 averaged). A question with one shared first token is dropped."""
    conditions = [("normal", "normal", None, None), ("type1", "transfer", "type1", None),
                  ("magnitude_matched_type1_s0", "magnitude_matched", "type1", 0),
                  ("magnitude_matched_type1_s1", "magnitude_matched", "type1", 1)]  # fmt: skip
    english_middle = {"normal": 0.2, "type1": 0.02, "magnitude_matched_type1_s0": 0.2,
                      "magnitude_matched_type1_s1": 0.1}  # fmt: skip
    rows = []
    for question in range(11):
        jitter = 1.0 + 0.01 * question
        for condition, kind, neuron_type, seed in conditions:
            for layer in range(N_LAYERS):
                if layer in MIDDLE:
                    english, l2 = english_middle[condition] * jitter, 0.05
                elif layer == LAST:
                    english, l2 = 0.01, 0.8
                else:
                    english, l2 = 1e-5, 1e-5
                for target, probability in (("question_language", l2), ("english", english)):
                    rows.append({
                        "model": "m", "language": "ja", "condition": condition, "example_id": f"q{question}",
                        "layer": layer, "target": target, "probability": probability,
                        "log_probability": math.log(probability), "same_token": question == 10,
                        "first_generated": True, "questions_asked": 30, "kind": kind, "neuron_type": neuron_type,
                        "top_n_label": None if kind == "normal" else "5", "seed": seed,
                    })  # fmt: skip
    return pl.DataFrame(rows, schema_overrides={"layer": pl.Int32, "seed": pl.Int32})


def test_phases_contrasts_and_curves_of_a_synthetic_table():
    lens = synthetic_lens()
    phases = report.logit_lens_phases(lens, "5", 200)
    normal = {row["measure"]: row for row in phases.filter(pl.col("group") == "normal").iter_rows(named=True)}
    jitters = 1.0 + 0.01 * np.arange(10)
    np.testing.assert_allclose(normal["english_lead_middle"]["mean"], np.mean(np.log(0.2 * jitters / 0.05)))
    np.testing.assert_allclose(normal["l2_lead_last"]["mean"], math.log(0.8 / 0.01))
    assert normal["l2_lead_last"]["n"] == 10  # the question with a shared first token is left out
    counts = phases.row(0, named=True)
    assert (counts["asked"], counts["answered"], counts["distinct"]) == (30, 11, 10)
    contrasts = report.logit_lens_contrasts(lens, "5", 200)
    row = contrasts.filter(pl.col("measure") == "log_english_middle").row(0, named=True)
    # Type-1's ln 0.02 against the control's seeds averaged per question: (ln 0.2 + ln 0.1) / 2.
    np.testing.assert_allclose(row["difference"], math.log(0.02) - (math.log(0.2) + math.log(0.1)) / 2)
    assert row["baseline"] == "magnitude_matched" and row["n"] == 10
    curves = report.logit_lens_curves(lens, "5", 200)
    middle = curves.filter((pl.col("group") == "type1") & (pl.col("target") == "english") & (pl.col("layer") == 5))
    np.testing.assert_allclose(middle["mean"], 0.02 * jitters.mean())
    assert curves.filter(pl.col("middle"))["layer"].unique().sort().to_list() == list(MIDDLE)


def context() -> FigureContext:
    return FigureContext("m", FigureSettings("5", "mutual_knn_k5", 200))


def verdict(name: str, tables) -> dict:
    return claim_row(CLAIMS[name], CLAIMS[name].settings, CLAIMS[name].test(tables, context()))


def test_claims_follow_the_synthetic_effects():
    lens = synthetic_lens()
    tables = {"logit_lens_phases": report.logit_lens_phases(lens, "5", 200),
              "logit_lens_contrasts": report.logit_lens_contrasts(lens, "5", 200)}  # fmt: skip
    assert verdict("latent_english", tables)["verdict"] == SUPPORTED
    assert verdict("latent_english_type1", tables)["verdict"] == SUPPORTED
    # English below the L2 in the middle layers, clearly: the first half of the claim is contradicted.
    flipped = lens.with_columns(
        pl.when(pl.col("layer").is_in(list(MIDDLE)) & (pl.col("target") == "question_language"))
        .then(pl.lit(0.9)).otherwise(pl.col("probability")).alias("probability")
    ).with_columns(pl.col("probability").log().alias("log_probability"))  # fmt: skip
    tables["logit_lens_phases"] = report.logit_lens_phases(flipped, "5", 200)
    assert verdict("latent_english", tables)["verdict"] == CONTRADICTED
    # Too few questions: inconclusive, not a verdict against the claim.
    few = lens.filter(pl.col("example_id").is_in(["q0", "q1", "q2"]))
    tables = {"logit_lens_phases": report.logit_lens_phases(few, "5", 200),
              "logit_lens_contrasts": report.logit_lens_contrasts(few, "5", 200)}  # fmt: skip
    assert verdict("latent_english", tables)["verdict"] == INCONCLUSIVE
    assert verdict("latent_english_type1", tables)["verdict"] == INCONCLUSIVE
    # Without the tables the claims are not measured.
    assert verdict("latent_english", {})["verdict"] == "not measured"


def test_numbers_and_charts_of_a_synthetic_table(tmp_path):
    from transfer_neurons.reporting.charts import save_chart

    lens = synthetic_lens()
    tables = {"logit_lens_phases": report.logit_lens_phases(lens, "5", 200),
              "logit_lens_contrasts": report.logit_lens_contrasts(lens, "5", 200)}  # fmt: skip
    numbers = report.phase_numbers(tables, context())
    assert numbers["distinct"].to_list() == [10]
    assert numbers["type1 minus control: ln P(English), middle"][0].endswith("vs magnitude_matched")
    spec = report.curves_chart(report.logit_lens_curves(lens, "5", 200), "t").to_dict()
    assert spec["facet"]["row"]["field"] == "language"
    assert "ja 10 of 11 answered of 30" in report.curves_title({"logit_lens": lens}, context())
    neurons = pl.DataFrame({"model": "m", "language": "ja", "condition": ["type1", "type1", "type2"],
                            "kind": "transfer", "neuron_type": ["type1", "type1", "type2"], "top_n_label": "5",
                            "seed": None, "layer": [0, 1, 3], "neuron": [3, 4, 7], "script_language": "ja",
                            "share": [0.2, 0.4, 0.9], "n_tokens": 10},
                           schema_overrides={"seed": pl.Int32, "layer": pl.Int32, "neuron": pl.Int32})  # fmt: skip
    scripts = report.logit_lens_scripts(neurons, "5", 200)
    assert scripts.filter(pl.col("group") == "type1")["mean"].to_list() == [pytest.approx(0.3)]
    save_chart(report.scripts_chart(scripts, "t"), tmp_path / "s.png", tmp_path / "s.vl.json")
    assert (tmp_path / "s.png").stat().st_size > 0


def test_the_summaries_of_an_empty_lens_are_empty():
    empty = pl.DataFrame(schema={**LENS_SCHEMA, "model": pl.String, "language": pl.String, "kind": pl.String,
                                 "neuron_type": pl.String, "top_n_label": pl.String, "top_n": pl.Int32,
                                 "seed": pl.Int32})  # fmt: skip
    assert report.logit_lens_phases(empty, "5", 100).height == 0
    assert report.logit_lens_curves(empty, "5", 100).height == 0

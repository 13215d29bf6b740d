"""The fine-tuning stage (issue 26): its neuron sets, its rules' functions, its reporting and its planning."""

import json

import numpy as np
import polars as pl
import pytest
import yaml

from tests.tiny import TOKENIZER_TEXT, save_tiny_model, tiny_model
from tests.workflow_helpers import REPO, planned_outputs, planned_rules, tiny_config, write_config
from transfer_neurons.evaluation.conditions import BaselineSettings, build_conditions
from transfer_neurons.evaluation.finetune import (
    CHECKPOINT_FILE,
    DELTA_FILE,
    EvaluationInputs,
    FinetuneEvaluation,
    TrainingSettings,
    apply_delta,
    evaluate_model,
    run_finetune,
    set_neurons,
    set_sizes,
    train,
    trainable_of,
)
from transfer_neurons.evaluation.finetune_sets import (
    BASE_SET,
    LORA_SET,
    MEASURE_UNITS,
    NEURON_SET_PARTS,
    TRAINED_SETS,
)
from transfer_neurons.evaluation.states import states_by_run
from transfer_neurons.model.adapters import adapter_for
from transfer_neurons.model.hooks import NeuronEdit
from transfer_neurons.model.loading import LoadedModel
from transfer_neurons.reporting.analyses.finetune import (
    finetune_contrasts,
    finetune_summary,
    finetuned_language,
)
from transfer_neurons.reporting.registry import FigureContext, FigureSettings

QA_FILE = REPO / "data" / "qa" / "builtin_mkqa.jsonl"
TASK_FILE = REPO / "data" / "lm_eval" / "tn_mc_ja.jsonl"
SETTINGS = TrainingSettings(steps=3, learning_rate=0.05, batch_size=4, seed=2, log_every=1, checkpoint_every=1)


def tiny_conditions(family: str = "llama") -> pl.DataFrame:
    """A conditions table of a tiny model: 5 Type-1 neurons in layers 0-1, 3 Type-2 neurons in layers 2-3."""
    facts = adapter_for(tiny_model(family)).facts
    top = pl.DataFrame({"top_n_label": "5", "neuron_type": ["type1"] * 5 + ["type2"] * 3,
                        "layer": [0, 0, 1, 1, 1, 2, 3, 3], "neuron": [1, 7, 2, 9, 30, 4, 5, 11]})  # fmt: skip
    rng = np.random.default_rng(0)
    magnitudes = pl.DataFrame({"layer": np.repeat(np.arange(facts.n_layers), facts.d_mlp),
                               "neuron": np.tile(np.arange(facts.d_mlp), facts.n_layers),
                               "magnitude": rng.uniform(0.1, 2.0, facts.n_layers * facts.d_mlp)})  # fmt: skip
    return build_conditions(top, {"type1": [0, 1], "type2": [2, 3]}, facts.d_mlp, main_label="5",
                            baselines=BaselineSettings(seeds=(0, 1)), magnitudes=magnitudes)  # fmt: skip


def as_pairs(neurons):
    return {(layer, neuron) for layer, chosen in neurons.items() for neuron in chosen}


# --- the neuron sets ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["llama", "bloom"])
@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")
def test_the_sets_and_their_controls_have_equal_sizes(family):
    adapter = adapter_for(tiny_model(family))
    conditions = tiny_conditions(family)
    sizes = dict(
        set_sizes(adapter, conditions, TRAINED_SETS, 0).select("neuron_set", "trainable_parameters").iter_rows()
    )
    neurons = {name: set_neurons(conditions, name, 0) for name in NEURON_SET_PARTS}
    assert len(as_pairs(neurons["type1"])) == 5 and len(as_pairs(neurons["type2"])) == 3
    # Each control has as many neurons as the set it matches, layer by layer for magnitude-matched ones.
    assert sizes["type1"] == sizes["magnitude_matched_type1"] == sizes["random_type1"]
    assert sizes["type1_type2"] == sizes["magnitude_matched_type1_type2"] == sizes["type1"] + sizes["type2"]
    assert {layer: len(chosen) for layer, chosen in neurons["magnitude_matched_type1"].items()} == {0: 2, 1: 3}
    assert as_pairs(neurons["type1_type2"]) == as_pairs(neurons["type1"]) | as_pairs(neurons["type2"])
    for control in ("magnitude_matched_type1", "random_type1", "magnitude_matched_type1_type2"):
        assert not as_pairs(neurons[control]) & as_pairs(neurons["type1_type2"]), control
    # LoRA: the nearest count LoRA reaches (d_model + d_mlp per rank), and what peft trains.
    per_rank = adapter.facts.d_model + adapter.facts.d_mlp
    assert abs(sizes[LORA_SET] - sizes["type1"]) <= per_rank / 2
    from peft import get_peft_model

    config = trainable_of(adapter, conditions, LORA_SET, 0)
    assert get_peft_model(tiny_model(family), config).get_nb_trainable_parameters()[0] == sizes[LORA_SET]


def test_a_control_seed_the_conditions_lack_is_named():
    with pytest.raises(ValueError, match="random_type1_s7.*control_seed"):
        set_neurons(tiny_conditions(), "random_type1", 7)
    with pytest.raises(ValueError, match="not a neuron set"):
        set_neurons(tiny_conditions(), "type3", 0)


def test_the_schema_lists_exactly_the_trained_sets():
    schema = yaml.safe_load((REPO / "config" / "schema.yaml").read_text())
    sets = schema["properties"]["evaluation"]["properties"]["finetune"]["properties"]["sets"]["items"]["enum"]
    assert sets == list(TRAINED_SETS)


# --- the evaluation of a delta ----------------------------------------------------------------------------
EVALUATION = FinetuneEvaluation(sentences=4, questions=3, items=3, qa_template="{question}? 答え: ",
                                qa_max_new_tokens=3, qa_stop="none", question_filter="paper", knn_k=2,
                                last_layer="normed", batch_size=4, loss_batch_size=2, max_batch_tokens=64)  # fmt: skip


def tiny_inputs(base: LoadedModel) -> EvaluationInputs:
    """Ten parallel pairs made of the tokenizer's sentences, with the base model's English states as the dump's."""
    from transfer_neurons.data.qa import load_qa
    from transfer_neurons.evaluation.choices import read_items

    english, l2 = TOKENIZER_TEXT[0::5] * 3, TOKENIZER_TEXT[3::5] * 3  # 6 pairs, cycling
    english = [f"{text} {index}" for index, text in enumerate(english)]
    l2 = [f"{text} {index}" for index, text in enumerate(l2)]
    activations = np.zeros((base.adapter.facts.n_layers, len(english), base.adapter.facts.d_mlp), np.float32)
    states = states_by_run(base, english, {"normal": NeuronEdit()}, batch_size=4, max_batch_tokens=64,
                           pivot_activations=activations, last_layer="normed")["normal"].layer_output  # fmt: skip
    pairs = pl.DataFrame({"id": [f"p{index}" for index in range(len(l2))], "pivot_text": english, "target_text": l2})
    return EvaluationInputs(language="ja", pivot="en", held_out={"ja": l2[:4], "en": english[:4]},
                            held_out_ids=pairs["id"].to_list()[:4],
                            records=load_qa({"path": str(QA_FILE)}, ["ja"], 3), items=read_items(TASK_FILE, 3),
                            pairs=pairs, pivot_states=states, pivot_activations=activations)  # fmt: skip


@pytest.mark.parametrize("family", ["llama", "gemma3"])
@pytest.mark.parametrize("neuron_set", ["type1", LORA_SET])
def test_a_delta_on_the_base_model_measures_as_the_trained_model(family, neuron_set, tokenizer, tmp_path):
    model = tiny_model(family)
    base = LoadedModel(model, tokenizer, adapter_for(model))
    inputs = tiny_inputs(base)
    before = evaluate_model(base, inputs, EVALUATION)
    assert before.group_by("measure").len().sort("measure").rows() == sorted(
        (measure, {"sentence": 4, "question": 3, "item": 3, "pair": 6}[unit]) for measure, unit in MEASURE_UNITS.items()
    )
    trained = tiny_model(family)
    trainable = trainable_of(adapter_for(trained), tiny_conditions(family), neuron_set, 0)
    result = train(trained, tokenizer, TOKENIZER_TEXT, trainable, SETTINGS, tmp_path, progress=False)
    after = evaluate_model(LoadedModel(trained, tokenizer, adapter_for(trained)), inputs, EVALUATION)

    rebuilt = apply_delta(tiny_model(family), result.delta_path)
    replayed = evaluate_model(LoadedModel(rebuilt, tokenizer, adapter_for(rebuilt)), inputs, EVALUATION)
    assert replayed.select("measure", "unit", "unit_id").equals(after.select("measure", "unit", "unit_id"))
    np.testing.assert_allclose(replayed["value"].to_numpy(), after["value"].to_numpy(), atol=1e-5)
    losses = pl.col("measure") == "l2_loss"
    assert not np.allclose(after.filter(losses)["value"].to_numpy(), before.filter(losses)["value"].to_numpy())


def test_the_base_model_is_its_own_english_reference(tokenizer):
    """For the untrained model, both k-NN measures compare the same English states."""
    model = tiny_model("llama")
    base = LoadedModel(model, tokenizer, adapter_for(model))
    table = evaluate_model(base, tiny_inputs(base), EVALUATION)
    shares = {measure: table.filter(pl.col("measure") == measure)["value"].to_numpy()
              for measure in ("knn_share", "knn_share_own")}  # fmt: skip
    np.testing.assert_allclose(shares["knn_share"], shares["knn_share_own"], atol=1e-9)


# --- the finetune rule's function: outputs, resume --------------------------------------------------------
@pytest.fixture
def stage_files(tmp_path):
    model_dir = save_tiny_model("llama", tmp_path / "weights")
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"name": "tiny", "source": "path", "location": str(model_dir),
                                    "trust_remote_code": False}))  # fmt: skip
    conditions = tmp_path / "conditions.parquet"
    tiny_conditions().write_parquet(conditions)
    pairs = tmp_path / "train.pairs.parquet"
    pl.DataFrame({"id": [str(index) for index in range(len(TOKENIZER_TEXT))], "pivot_text": TOKENIZER_TEXT,
                  "target_text": TOKENIZER_TEXT, "kept": True}).write_parquet(pairs)  # fmt: skip
    return manifest, conditions, pairs


def test_a_killed_training_job_resumes_and_publishes_one_whole_delta(stage_files, tokenizer, tmp_path):
    manifest, conditions, pairs = stage_files
    out = tmp_path / "results" / "type1"
    work_dir = tmp_path / "results" / "type1.work"
    delta_path, log_path = out / DELTA_FILE, out / "training.parquet"

    def stop_at_two(step, record):
        if step == 2:
            raise KeyboardInterrupt

    # A first attempt, killed after step 2: a checkpoint in the work folder, nothing among the outputs.
    with pytest.raises(KeyboardInterrupt):
        train(tiny_model("llama"), tokenizer, TOKENIZER_TEXT, trainable_of(adapter_for(tiny_model("llama")),
              pl.read_parquet(conditions), "type1", 0), SETTINGS, work_dir, progress=False,
              on_step=stop_at_two)  # fmt: skip
    assert (work_dir / CHECKPOINT_FILE).exists() and not delta_path.exists()

    labels = {"model": "tiny", "language": "ja"}
    result = run_finetune(manifest, conditions, pairs, "type1", SETTINGS, control_seed=0, delta_path=delta_path,
                          log_path=log_path, work_dir=work_dir, device="cpu", labels=labels)  # fmt: skip
    assert result.resumed_from_step == 2
    assert delta_path.exists() and not work_dir.exists()
    log = pl.read_parquet(log_path)
    assert log["step"].to_list() == [1, 2, 3]
    assert set(log["neuron_set"]) == {"type1"} and set(log["trainable_parameters"]) == {result.trainable_count}

    uninterrupted = train(tiny_model("llama"), tokenizer, TOKENIZER_TEXT, set_neurons(pl.read_parquet(conditions),
                          "type1", 0), SETTINGS, tmp_path / "whole", progress=False)  # fmt: skip
    assert log["loss"].to_list() == pytest.approx([entry["loss"] for entry in uninterrupted.log], abs=1e-6)


# --- reporting --------------------------------------------------------------------------------------------
def synthetic_measures(shifts: dict[str, float], n_units: int = 12, noise: float = 0.05) -> pl.DataFrame:
    """A measures table of one language: base values per unit, each set's the base's plus its shift and noise."""
    rng = np.random.default_rng(1)
    base = rng.uniform(3.0, 6.0, n_units)
    frames = []
    for neuron_set, shift in {BASE_SET: 0.0, **shifts}.items():
        values = base + shift + (0 if neuron_set == BASE_SET else rng.normal(0, noise, n_units))
        frames.append(pl.DataFrame({"model": "m", "language": "ja", "neuron_set": neuron_set,
                                    "trainable_parameters": 0 if neuron_set == BASE_SET else 960,
                                    "measure": "l2_loss", "unit": "sentence",
                                    "unit_id": [f"s{index:02d}" for index in range(n_units)],
                                    "value": values}))  # fmt: skip
    return pl.concat(frames).sample(fraction=1.0, shuffle=True, seed=3)  # row order must not matter


def test_the_summary_gives_each_set_its_change_from_the_base():
    summary = finetune_summary(synthetic_measures({"type1": -1.0, "random_type1": -0.2}), 500)
    rows = {row["neuron_set"]: row for row in summary.iter_rows(named=True)}
    assert list(rows) == [BASE_SET, "type1", "random_type1"]  # in the stage's order
    assert rows[BASE_SET]["change"] is None and rows[BASE_SET]["n"] == 12
    assert rows["type1"]["change"] == pytest.approx(-1.0, abs=0.05)
    assert rows["type1"]["change_ci_low"] < rows["type1"]["change"] < rows["type1"]["change_ci_high"] < -0.9
    assert rows["random_type1"]["change_ci_low"] > -0.3
    assert rows["type1"]["lower_is_better"] and rows["type1"]["trainable_parameters"] == 960


def test_the_contrasts_pair_type1_with_its_controls_by_unit():
    measures = synthetic_measures({"type1": -1.0, "magnitude_matched_type1": -0.4, "random_type1": -0.1})
    contrasts = finetune_contrasts(measures, 500)
    rows = {row["control_set"]: row for row in contrasts.iter_rows(named=True)}
    assert set(rows) == {"magnitude_matched_type1", "random_type1"}  # LoRA and the union did not run
    assert rows["magnitude_matched_type1"]["baseline"] == "magnitude_matched"
    assert rows["magnitude_matched_type1"]["difference"] == pytest.approx(-0.6, abs=0.06)
    assert rows["random_type1"]["difference"] == pytest.approx(-0.9, abs=0.06)
    # Paired by unit: the base's spread (3 to 6 nats) cancels, so the interval is as narrow as the noise.
    assert rows["magnitude_matched_type1"]["ci_high"] - rows["magnitude_matched_type1"]["ci_low"] < 0.15


def test_the_claim_is_decided_by_the_magnitude_matched_control():
    measures = synthetic_measures({"type1": -1.0, "magnitude_matched_type1": -0.4, "random_type1": -0.1})
    tables = {"finetune_contrasts": finetune_contrasts(measures, 500)}
    context = FigureContext("m", FigureSettings(main_label="5", knn_metric="mutual_knn_k5", resamples=500))
    finding = finetuned_language(tables, context)
    assert finding.control.startswith("magnitude-matched")
    (case,) = finding.cases
    assert case.label == "ja" and case.n == 12
    assert case.estimate == pytest.approx(-0.6, abs=0.06) and case.ci_high < 0
    assert "random" in case.detail
    assert finetuned_language({}, context) is None


# --- planning ---------------------------------------------------------------------------------------------
def test_a_dry_run_plans_the_stage_only_when_enabled(tmp_path):
    config = tiny_config(tmp_path)
    config["evaluation"]["finetune"]["sets"] = list(TRAINED_SETS)
    write_config(tmp_path, config)
    outputs = [path for line in planned_outputs(tmp_path, "all") for path in line.split(", ")]
    deltas = sorted(path for path in outputs if path.endswith(DELTA_FILE))
    assert deltas == sorted(f"results/tiny/finetune/ja/{name}/{DELTA_FILE}" for name in TRAINED_SETS)
    measures = [path for path in outputs if path.endswith("measures.parquet")]
    assert (
        len(measures) == len(TRAINED_SETS) + 1 and f"results/tiny/finetune/ja/{BASE_SET}/measures.parquet" in measures
    )
    assert "reports/figures/tiny/evaluation/finetune_change.png" in outputs

    config["evaluation"]["finetune"]["enabled"] = False
    write_config(tmp_path, config)
    assert not {"finetune", "evaluate_finetuned"} & planned_rules(tmp_path, "all")

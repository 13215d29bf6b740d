"""The amplification sweep: factor 1 is the normal run, runs per factor, and the contrasts against the control."""

import numpy as np
import polars as pl
import torch

from transfer_neurons.evaluation.amplification import run_name, sweep_runs, unstacked
from transfer_neurons.evaluation.qa import continuations_by_run
from transfer_neurons.model.batching import tokenize
from transfer_neurons.model.hooks import HookSession, NeuronEdit
from transfer_neurons.reporting.analyses.amplification import amplification_contrasts

SENTENCES = ["The cat sleeps on the sofa.", "猫は寝ています。"]


def test_scaling_by_one_is_exactly_the_normal_run(loaded):
    every_neuron = {layer: list(range(loaded.facts.d_mlp)) for layer in range(loaded.facts.n_layers)}
    batch = tokenize(loaded.tokenizer, SENTENCES)
    with torch.no_grad():
        normal = loaded.model(**batch.model_inputs(loaded.model)).logits
        with HookSession(loaded.adapter) as session:
            session.edit_neurons([NeuronEdit(every_neuron, 1.0, "all")])
            scaled = loaded.model(**batch.model_inputs(loaded.model)).logits
    assert torch.equal(normal, scaled)
    runs = {"normal": NeuronEdit(), "x1": NeuronEdit(every_neuron, 1.0, "prompt")}
    answers = continuations_by_run(loaded, ["Where is the station? Answer: "], runs, max_new_tokens=3)
    assert answers["x1"] == answers["normal"]


def conditions_table():
    return pl.DataFrame(
        {"condition": ["normal", "type1", "type1", "magnitude_matched_type1_s0"], "layer": [None, 0, 1, 1],
         "neuron": [None, 3, 4, 5]},
        schema={"condition": pl.String, "layer": pl.Int32, "neuron": pl.Int32},
    )  # fmt: skip


def test_every_condition_runs_at_every_factor_but_one():
    runs = sweep_runs(conditions_table(), [0.0, 1.0, 2.0], "prompt")
    control = "magnitude_matched_type1_s0"
    expected = ["normal", run_name("type1", 0), run_name("type1", 2), run_name(control, 0), run_name(control, 2)]
    assert sorted(runs) == sorted(expected)
    assert runs[run_name("type1", 2)] == NeuronEdit({0: [3], 1: [4]}, 2.0, "prompt")


def test_factor_one_rows_are_the_normal_runs_values():
    values = {"normal": [1.0, 0.5], run_name("type1", 2.0): [0.0, 0.25]}
    table = unstacked(values, ["normal", "type1"], [2.0], "qa_f1", ["q1", "q2"])
    at_one = table.filter((pl.col("condition") == "type1") & (pl.col("factor") == 1.0))
    assert at_one["value"].to_list() == [1.0, 0.5]
    at_two = table.filter(pl.col("factor") == 2.0)
    assert at_two.filter(pl.col("condition") == "type1")["value"].to_list() == [0.0, 0.25]
    assert at_two.filter(pl.col("condition") == "normal")["value"].to_list() == [1.0, 0.5]  # the same at every factor


def test_contrasts_pair_the_transfer_neurons_with_their_control_unit_by_unit():
    rows = []
    for unit in range(30):
        for condition, kind, group_type, seed, value in [
            ("type1", "transfer", "type1", None, 0.8 + 0.01 * (unit % 3)),
            ("magnitude_matched_type1_s0", "magnitude_matched", "type1", 0, 0.5),
            ("magnitude_matched_type1_s1", "magnitude_matched", "type1", 1, 0.3),
        ]:
            rows.append({"model": "m", "language": "ja", "measure": "qa_f1", "condition": condition, "kind": kind,
                         "neuron_type": group_type, "seed": seed, "top_n_label": "5", "factor": 2.0,
                         "unit": f"q{unit}", "value": value})  # fmt: skip
    contrasts = amplification_contrasts(pl.DataFrame(rows), "5", 200)
    assert contrasts.height == 1
    row = contrasts.row(0, named=True)
    np.testing.assert_allclose(row["control"], 0.4)  # the two seeds averaged per question
    np.testing.assert_allclose(row["difference"], 0.81 - 0.4, atol=1e-9)
    assert row["ci_low"] > 0.4 and row["n"] == 30

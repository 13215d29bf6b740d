"""Magnitude-matched and LAPE conditions."""

import numpy as np
import polars as pl

from transfer_neurons.detection.magnitudes import layer_write_magnitudes
from transfer_neurons.evaluation.conditions import BaselineSettings, build_conditions, condition_neurons

D_MLP = 200
CANDIDATES = {"type1": [0, 1], "type2": [2, 3]}
# Every layer's neurons write 1.01x more than the one before, in a shuffled order.
MAGNITUDES = pl.concat(
    [
        pl.DataFrame(
            {
                "layer": layer,
                "neuron": np.random.default_rng(layer).permutation(D_MLP),
                "magnitude": 1.01 ** np.arange(D_MLP),
            },
            schema={"layer": pl.Int32, "neuron": pl.Int32, "magnitude": pl.Float64},
        )
        for layer in range(4)
    ]
)
TOLERANCE = 1.1  # a matched neuron writes within 10 % of its transfer neuron (pool of 5 at 1 % steps)


def top_table() -> pl.DataFrame:
    """Six transfer neurons per type, among the largest writers of their layers (as on real models)."""
    rows = []
    for neuron_type, layers in CANDIDATES.items():
        for layer in layers:
            order = MAGNITUDES.filter(pl.col("layer") == layer).sort("magnitude", descending=True)["neuron"]
            for rank, neuron in enumerate(order[2:14:4].to_list()):  # every 4th of the 3rd to 14th largest
                rows.append(("4", 6, neuron_type, layer, neuron, 1.0, rank + 1))
    return pl.DataFrame(rows, schema=["top_n_label", "top_n", "neuron_type", "layer", "neuron", "score", "rank"],
                        orient="row")  # fmt: skip


def conditions(seeds=(0, 1, 2), lape=None):
    return build_conditions(
        top_table(), CANDIDATES, D_MLP, main_label="4", baselines=BaselineSettings(seeds=seeds, layer_matched=False),
        magnitudes=MAGNITUDES, lape_neurons=lape,
    )  # fmt: skip


def size(layer: int, neuron: int) -> float:
    row = MAGNITUDES.filter((pl.col("layer") == layer) & (pl.col("neuron") == neuron))
    return float(row["magnitude"][0])


def test_magnitude_matched_sets_match_sizes_and_never_pick_a_transfer_neuron():
    table = conditions()
    top = top_table()
    transfer = set(zip(top["layer"], top["neuron"], strict=True))
    for neuron_type in CANDIDATES:
        chosen = top.filter(pl.col("neuron_type") == neuron_type).sort("layer", "neuron")
        for seed in (0, 1, 2):
            matched = condition_neurons(table, f"magnitude_matched_{neuron_type}_s{seed}")
            drawn = [(layer, neuron) for layer, neurons in sorted(matched.items()) for neuron in neurons]
            assert not set(drawn) & transfer
            assert len(set(drawn)) == chosen.height  # one distinct partner each
            for (layer, neuron), partner in zip(chosen.select("layer", "neuron").iter_rows(), drawn, strict=True):
                assert partner[0] == layer
                ratio = size(*partner) / size(layer, neuron)
                assert 1 / TOLERANCE <= ratio <= TOLERANCE
    assert condition_neurons(table, "magnitude_matched_type1_s0") != condition_neurons(
        table, "magnitude_matched_type1_s1"
    )
    assert conditions().equals(table)  # seeded


def test_the_lape_set_is_one_more_condition_without_a_type():
    lape = pl.DataFrame({"layer": [0, 3], "neuron": [5, 7]}, schema={"layer": pl.Int32, "neuron": pl.Int32})
    table = conditions(seeds=(0,), lape=lape)
    assert condition_neurons(table, "lape") == {0: [5], 3: [7]}
    info = table.filter(pl.col("condition") == "lape")
    assert info["kind"].unique().to_list() == ["lape"] and info["neuron_type"].is_null().all()


def test_write_magnitude_is_mean_absolute_activation_times_write_norm():
    activations = np.array([[1.0, -2.0], [-3.0, 0.0]])  # [S=2, d_mlp=2]
    write_vectors = np.array([[3.0, 4.0], [0.0, 1.0]])  # norms 5 and 1
    np.testing.assert_allclose(layer_write_magnitudes(activations, write_vectors), [2.0 * 5, 1.0 * 1])

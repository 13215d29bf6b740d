"""Intervention conditions: which neurons each evaluation condition deactivates.

A conditions table has one row per (condition, layer, neuron) with columns
``condition, kind, neuron_type, top_n_label, top_n, seed, layer, neuron``. Kinds:

* ``normal``: nothing is deactivated (one row with null layer and neuron);
* ``transfer``: the top-N Type-1 or Type-2 neurons;
* ``random``: N neurons drawn uniformly from the type's candidate layers, excluding
  every top-N transfer neuron of either type (seeded);
* ``layer_matched``: as many random neurons per layer as the transfer neurons have there.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from transfer_neurons.detection.ranking import candidate_layers
from transfer_neurons.model.hooks import neurons_by_layer
from transfer_neurons.model.manifest import manifest_facts
from transfer_neurons.names import NEURON_TYPES, ConditionKind, condition_name, sweep_suffix

CONDITION_SCHEMA = {
    "condition": pl.String,
    "kind": pl.String,
    "neuron_type": pl.String,
    "top_n_label": pl.String,
    "top_n": pl.Int32,
    "seed": pl.Int32,
    "layer": pl.Int32,
    "neuron": pl.Int32,
}


@dataclass(frozen=True)
class InterventionSettings:
    """How a condition's neurons are scaled: at which positions, by which factor, in which batches."""

    factor: float
    batch_size: int
    max_batch_tokens: int | None = None  # padded tokens per batch at most (sentences are never cut)
    positions: str = "prompt"  # a position mode of model.hooks.POSITION_MODES


def _rows(kind: str, neuron_type, label, top_n, seed, layers, neurons, suffix: str = "") -> pl.DataFrame:
    """One condition's rows: one per (layer, neuron) it scales."""
    count = len(layers)
    name = condition_name(kind, neuron_type, seed, suffix)
    values = [name, kind, neuron_type, label, top_n, seed]
    columns = {column: [value] * count for column, value in zip(CONDITION_SCHEMA, values, strict=False)}
    return pl.DataFrame({**columns, "layer": list(layers), "neuron": list(neurons)}, schema=CONDITION_SCHEMA)


def _draw_excluding(rng: np.random.Generator, layers: list[int], d_mlp: int, count: int, excluded: set) -> list:
    """``count`` distinct (layer, neuron) pairs from ``layers`` not in ``excluded``."""
    pool = np.array([(layer, neuron) for layer in layers for neuron in range(d_mlp) if (layer, neuron) not in excluded])
    if count > len(pool):
        raise ValueError(f"cannot draw {count} random neurons from {len(pool)} eligible ones")
    return [tuple(map(int, pair)) for pair in pool[rng.choice(len(pool), size=count, replace=False)]]


def build_conditions(
    top_neurons: pl.DataFrame,
    candidate_layers: dict[str, list[int]],
    d_mlp: int,
    *,
    main_label: str,
    seeds: list[int],
    sweep_seeds: list[int] | None = None,
    layer_matched: bool = True,
) -> pl.DataFrame:
    """All conditions for one model and language, from its top-N lists (all sweep labels).

    The main label gets every kind with ``seeds``; the other sweep labels get transfer and
    random with ``sweep_seeds`` (default: ``seeds``), for dose-response curves.
    """
    frames = [_rows(ConditionKind.NORMAL, None, None, None, None, [None], [None])]
    for label in top_neurons["top_n_label"].unique(maintain_order=True).to_list():
        at_label = top_neurons.filter(pl.col("top_n_label") == label)
        excluded = set(zip(at_label["layer"].to_list(), at_label["neuron"].to_list(), strict=True))
        is_main = label == main_label
        suffix = sweep_suffix(label, main_label)
        for neuron_type in NEURON_TYPES:
            chosen = at_label.filter(pl.col("neuron_type") == neuron_type)
            count = chosen.height
            frames.append(
                _rows(
                    ConditionKind.TRANSFER, neuron_type, label, count, None, chosen["layer"], chosen["neuron"], suffix
                )
            )
            for seed in seeds if is_main else (sweep_seeds if sweep_seeds is not None else seeds):
                rng = np.random.default_rng([seed, NEURON_TYPES.index(neuron_type)])
                drawn = _draw_excluding(rng, candidate_layers[neuron_type], d_mlp, count, excluded)
                layers, neurons = zip(*drawn, strict=True) if drawn else ((), ())
                frames.append(_rows(ConditionKind.RANDOM, neuron_type, label, count, seed, layers, neurons, suffix))
                if layer_matched and is_main:
                    frames.append(_layer_matched(chosen, d_mlp, excluded, neuron_type, label, seed))
    return pl.concat(frames)


def _layer_matched(chosen: pl.DataFrame, d_mlp: int, excluded: set, neuron_type: str, label: str, seed: int):
    rng = np.random.default_rng([seed, NEURON_TYPES.index(neuron_type), 1])
    layers, neurons = [], []
    for layer, count in chosen.group_by("layer").len().sort("layer").iter_rows():
        for _, neuron in _draw_excluding(rng, [layer], d_mlp, count, excluded):
            layers.append(layer)
            neurons.append(neuron)
    return _rows(ConditionKind.LAYER_MATCHED, neuron_type, label, chosen.height, seed, layers, neurons)


def make_conditions(manifest: Path, top: Path, *, type1_fraction: float, main_label: str, seeds, sweep_seeds,
                    layer_matched: bool) -> pl.DataFrame:  # fmt: skip
    """The conditions table of one model and language (the ``conditions`` rule)."""
    facts = manifest_facts(manifest)
    return build_conditions(
        pl.read_parquet(top),
        candidate_layers(facts["n_layers"], type1_fraction),
        facts["d_mlp"],
        main_label=str(main_label),
        seeds=list(seeds),
        sweep_seeds=list(sweep_seeds),
        layer_matched=layer_matched,
    )


def condition_names(conditions: pl.DataFrame) -> list[str]:
    return conditions["condition"].unique(maintain_order=True).to_list()


def condition_neurons(conditions: pl.DataFrame, condition: str) -> dict[int, list[int]]:
    """``{layer: [neurons]}`` deactivated by ``condition`` (empty for ``normal``)."""
    rows = conditions.filter((pl.col("condition") == condition) & pl.col("layer").is_not_null())
    return neurons_by_layer(rows["layer"].to_list(), rows["neuron"].to_list())


def condition_info(conditions: pl.DataFrame) -> pl.DataFrame:
    """One row per condition with its kind, type, N and seed."""
    return conditions.drop("layer", "neuron").unique(subset="condition", maintain_order=True)

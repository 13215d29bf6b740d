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

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from transfer_neurons.data.tidy import labelled
from transfer_neurons.detection.ranking import candidate_layers
from transfer_neurons.model.hooks import NeuronEdit, neurons_by_layer
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


def _rows(
    kind: str, neuron_type: str | None, label: str | None, top_n: int | None, seed: int | None,
    layers: Collection[int | None], neurons: Collection[int | None], suffix: str = "",
) -> pl.DataFrame:  # fmt: skip
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


@dataclass(frozen=True)
class BaselineSettings:
    """Which drawn sets the transfer neurons are compared against (the ``evaluation`` config section)."""

    seeds: tuple[int, ...]  # random, layer- and magnitude-matched sets at the main N
    sweep_seeds: tuple[int, ...] = ()  # random sets at the other N of the sweep (dose-response)
    layer_matched: bool = True
    magnitude_matched: bool = True
    # A magnitude-matched neuron is drawn from the this many unused neurons of the layer whose
    # write size is nearest the transfer neuron's: seeds then differ, sizes stay close.
    magnitude_pool: int = 5


def build_conditions(
    top_neurons: pl.DataFrame,
    candidate_layers: dict[str, list[int]],
    d_mlp: int,
    *,
    main_label: str,
    baselines: BaselineSettings,
    magnitudes: pl.DataFrame | None = None,
    lape_neurons: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """All conditions for one model and language, from its top-N lists (all sweep labels).

    The main label gets every baseline kind with ``baselines.seeds``; the other sweep labels get
    transfer and random sets with ``baselines.sweep_seeds``, for dose-response curves.
    ``magnitudes`` (layer, neuron, magnitude) is needed for magnitude-matched sets,
    ``lape_neurons`` (layer, neuron) adds the language's LAPE set as one more condition.
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
            for seed in baselines.seeds if is_main else baselines.sweep_seeds:
                rng = np.random.default_rng([seed, NEURON_TYPES.index(neuron_type)])
                drawn = _draw_excluding(rng, candidate_layers[neuron_type], d_mlp, count, excluded)
                layers, neurons = zip(*drawn, strict=True) if drawn else ((), ())
                frames.append(_rows(ConditionKind.RANDOM, neuron_type, label, count, seed, layers, neurons, suffix))
                if baselines.layer_matched and is_main:
                    frames.append(_layer_matched(chosen, d_mlp, excluded, neuron_type, label, seed))
                if baselines.magnitude_matched and is_main:
                    if magnitudes is None:
                        raise ValueError("magnitude-matched baselines need the write magnitudes")
                    frames.append(_magnitude_matched(chosen, magnitudes, excluded, neuron_type, label, seed, baselines))
    if lape_neurons is not None:
        frames.append(
            _rows(
                ConditionKind.LAPE, None, None, lape_neurons.height, None, lape_neurons["layer"], lape_neurons["neuron"]
            )
        )
    return pl.concat(frames)


def _layer_matched(
    chosen: pl.DataFrame, d_mlp: int, excluded: set, neuron_type: str, label: str, seed: int
) -> pl.DataFrame:
    rng = np.random.default_rng([seed, NEURON_TYPES.index(neuron_type), 1])
    layers, neurons = [], []
    for layer, count in chosen.group_by("layer").len().sort("layer").iter_rows():
        for _, neuron in _draw_excluding(rng, [layer], d_mlp, count, excluded):
            layers.append(layer)
            neurons.append(neuron)
    return _rows(ConditionKind.LAYER_MATCHED, neuron_type, label, chosen.height, seed, layers, neurons)


def magnitude_matched_neurons(
    chosen: pl.DataFrame, magnitudes: pl.DataFrame, excluded: set, rng: np.random.Generator, pool_size: int
) -> list[tuple[int, int]]:
    """For each chosen (layer, neuron), a different neuron of its layer with a similar write size.

    The partner is drawn uniformly from the ``pool_size`` unused neurons whose log magnitude is
    nearest the chosen neuron's; ``excluded`` (every transfer neuron) is never drawn.
    """
    drawn: list[tuple[int, int]] = []
    used: set[tuple[int, int]] = set()
    for key, rows in magnitudes.group_by("layer", maintain_order=True):
        layer = int(key[0])
        wanted = chosen.filter(pl.col("layer") == layer).sort("neuron")["neuron"].to_list()
        if not wanted:
            continue
        neurons = rows["neuron"].to_numpy()
        log_size = np.log(np.maximum(rows["magnitude"].to_numpy(), 1e-30))
        size_of = dict(zip(neurons.tolist(), log_size.tolist(), strict=True))
        for neuron in wanted:
            free = np.array([(layer, int(n)) not in excluded and (layer, int(n)) not in used for n in neurons])
            if not free.any():
                raise ValueError(f"layer {layer}: no neuron left to match transfer neuron {neuron} in size")
            distance = np.abs(log_size - size_of[neuron])
            candidates = neurons[free][np.argsort(distance[free], kind="stable")[:pool_size]]
            partner = (layer, int(rng.choice(candidates)))
            used.add(partner)
            drawn.append(partner)
    return drawn


def _magnitude_matched(
    chosen: pl.DataFrame, magnitudes: pl.DataFrame, excluded: set, neuron_type: str, label: str, seed: int,
    baselines: BaselineSettings,
) -> pl.DataFrame:  # fmt: skip
    rng = np.random.default_rng([seed, NEURON_TYPES.index(neuron_type), 2])
    drawn = magnitude_matched_neurons(chosen, magnitudes.sort("layer"), excluded, rng, baselines.magnitude_pool)
    layers, neurons = zip(*drawn, strict=True) if drawn else ((), ())
    return _rows(ConditionKind.MAGNITUDE_MATCHED, neuron_type, label, chosen.height, seed, layers, neurons)


def make_conditions(
    manifest: Path, top: Path, *, type1_fraction: float, main_label: str, baselines: BaselineSettings,
    magnitudes: Path | None = None, lape: Path | None = None, labels: dict,
) -> pl.DataFrame:  # fmt: skip
    """The conditions table of one model and language (the ``conditions`` rule).

    ``lape`` is the model's LAPE table (language, layer, neuron); ``labels["language"]`` picks its rows.
    """
    facts = manifest_facts(manifest)
    lape_neurons = None
    if lape is not None:
        lape_neurons = pl.read_parquet(lape).filter(pl.col("language") == labels["language"]).sort("layer", "neuron")
    table = build_conditions(
        pl.read_parquet(top),
        candidate_layers(facts["n_layers"], type1_fraction),
        facts["d_mlp"],
        main_label=str(main_label),
        baselines=baselines,
        magnitudes=pl.read_parquet(magnitudes) if magnitudes is not None else None,
        lape_neurons=lape_neurons,
    )
    return labelled(table, **labels)


def condition_names(conditions: pl.DataFrame) -> list[str]:
    return conditions["condition"].unique(maintain_order=True).to_list()


def condition_neurons(conditions: pl.DataFrame, condition: str) -> dict[int, list[int]]:
    """``{layer: [neurons]}`` deactivated by ``condition`` (empty for ``normal``)."""
    rows = conditions.filter((pl.col("condition") == condition) & pl.col("layer").is_not_null())
    return neurons_by_layer(rows["layer"].to_list(), rows["neuron"].to_list())


def condition_runs(conditions: pl.DataFrame, settings: InterventionSettings) -> dict[str, NeuronEdit]:
    """Every condition's edit: its neurons scaled by ``settings.factor`` at ``settings.positions``."""
    return {
        name: NeuronEdit(condition_neurons(conditions, name), settings.factor, settings.positions)
        for name in condition_names(conditions)
    }


def condition_info(conditions: pl.DataFrame) -> pl.DataFrame:
    """One row per condition with its kind, type, N and seed."""
    columns = [column for column in CONDITION_SCHEMA if column not in ("layer", "neuron")]
    return conditions.select(columns).unique(subset="condition", maintain_order=True)


def select_conditions(
    conditions: pl.DataFrame, kinds: Iterable[str], main_label: str, *, include_sweep: bool = False,
    seeds: Iterable[int] | None = None,
) -> pl.DataFrame:  # fmt: skip
    """The conditions of ``kinds`` an analysis runs: at the main N only unless ``include_sweep``
    (conditions without an N, such as normal and LAPE, always), and only ``seeds`` when given."""
    table = conditions.filter(pl.col("kind").is_in(list(kinds)))
    if not include_sweep:
        table = table.filter(pl.col("top_n_label").is_null() | (pl.col("top_n_label") == str(main_label)))
    if seeds is not None:
        table = table.filter(pl.col("seed").is_null() | pl.col("seed").is_in(list(seeds)))
    return table

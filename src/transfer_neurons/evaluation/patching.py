"""Activation patching: do the transfer neurons' values carry what deactivating them removes?

For each test pair, the L2 sentence runs clean, and "corrupted" with the top-N Type-1 neurons
deactivated at the last token. The corrupted run is then repeated with those neurons' activations
(the input of the down projection, what the score multiplies by the write vector) written back at
the last token, from one of three sources:

* ``clean``: the same neurons in the clean L2 run (restoration);
* ``english``: the same neurons in the English run of the same pair (interchange);
* ``mean``: each neuron's mean over the language's training sentences (a mean-activation patch);

either one layer's neurons at a time (``single``) or every layer's up to that one (``cumulative``).
The measure is the English-L2 alignment the paper uses, per layer: mutual k-NN and the cosine of
parallel pairs. ``recovery = (patched - corrupted) / (clean - corrupted)``. The same patching of a
control set (a magnitude-matched or random set of the same size) tells what any set of neurons of
that size would give back. Two tables: per run, layer and metric; and per patched run, test pair and
metric, each pair's alignment averaged over layers, so that the report can resample pairs for the
recovery's confidence interval.

Deactivation and patching touch the last token only, so every run shares the batch's unscaled
prefix and computes the last token alone, and several runs go through one pass, each on its own
copy of the batch's rows (at the default sizes, a set's 43 runs take 2 passes instead of 43).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import torch
from tqdm import tqdm

from transfer_neurons.data.dumps import Dump, check_last_layer, kept_pairs, with_last_layer
from transfer_neurons.data.tidy import labelled
from transfer_neurons.evaluation.alignment import check_knn_ks, nearest_neighbours, neighbour_shares, row_cosines
from transfer_neurons.evaluation.conditions import condition_neurons
from transfer_neurons.model.batching import (
    copies_per_pass,
    length_sorted_batches,
    pass_groups,
    prefix_cache,
    token_lengths,
    tokenize,
)
from transfer_neurons.model.hooks import NeuronEdit, last_token_states
from transfer_neurons.model.loading import LoadedModel, load_model
from transfer_neurons.names import (
    TARGET_SIDE,
    TRANSFER_SET,
    ConditionKind,
    NeuronType,
    condition_group,
    condition_name,
)

SOURCES = ("clean", "english", "mean")
SCOPES = ("single", "cumulative")


@dataclass(frozen=True)
class Patch:
    """One patched run: which layers of the set get which source's values (none: the corrupted run)."""

    source: str | None
    scope: str | None
    patched_layer: int | None
    layers: tuple[int, ...]


def patches_of(set_layers: Sequence[int]) -> list[Patch]:
    """The corrupted run, then every source x scope x layer of the set."""
    runs = [Patch(None, None, None, ())]
    for source in SOURCES:
        for index, layer in enumerate(set_layers):
            runs.append(Patch(source, "single", layer, (layer,)))
            runs.append(Patch(source, "cumulative", layer, tuple(set_layers[: index + 1])))
    return runs


# A run's hooks for a batch: (neurons scaled by the factor, {layer: (neurons, values [batch, n])} patched).
RunHooks = tuple[Mapping[int, Sequence[int]], Mapping[int, tuple[Sequence[int], torch.Tensor]]]
Run = Callable[[Sequence[int]], RunHooks]  # a run: a batch's sentence indices -> its hooks for the batch


def last_token_runs(
    loaded: LoadedModel, sentences: Sequence[str], runs: Mapping[str, Run], factor: float,
    max_batch_tokens: int | None, last_layer: str = "raw",
) -> dict[str, tuple[np.ndarray, np.ndarray]]:  # fmt: skip
    """Layer states [L, N, d] (the last layer read as ``last_layer`` says) and neuron activations
    [L, N, d_mlp] at the last token, for each named run.

    ``runs[name](rows)`` gives the run's ``RunHooks`` for the batch of sentence indices ``rows``;
    every run continues from the batch's unscaled prefix. A run computes one token per row, so
    batches are as wide as ``max_batch_tokens`` allows for the prefix, and several runs share one
    forward pass, each on its own copy of the batch's rows (``model.hooks.last_token_states``), as
    many as the same budget allows for their copies of the prefix cache.
    """
    batches = length_sorted_batches(token_lengths(loaded.tokenizer, sentences), len(sentences), max_batch_tokens)
    names = list(runs)
    outputs: dict[str, list[np.ndarray]] = {name: [] for name in names}
    activations: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for rows in tqdm(batches, desc=f"{len(runs)} runs x batches", unit="batch"):
        batch = tokenize(loaded.tokenizer, [sentences[row] for row in rows]).to(loaded.device)
        with torch.no_grad():
            prefix = prefix_cache(loaded.model, batch)
        n_rows, width = batch.input_ids.shape
        per_pass = copies_per_pass(n_rows, width, len(names), max_batch_tokens)
        for group in pass_groups(names, per_pass):
            edits = [NeuronEdit(scaled, factor, "last", patches) for scaled, patches in (runs[n](rows) for n in group)]
            captured = last_token_states(loaded.model, loaded.adapter, batch, prefix, edits,
                                         final_norm=check_last_layer(last_layer) == "normed")  # fmt: skip
            for name, states in zip(group, captured, strict=True):
                outputs[name].append(
                    with_last_layer(states.layer_output, states.final_normed, last_layer).cpu().numpy()
                )
                activations[name].append(states.neuron_activations.cpu().numpy())
    corpus_order = np.argsort(np.concatenate([np.asarray(rows) for rows in batches]))
    return {
        name: (
            np.concatenate(outputs[name], axis=1)[:, corpus_order],
            np.concatenate(activations[name], axis=1)[:, corpus_order],
        )
        for name in runs
    }


def no_hooks(rows: Sequence[int]) -> RunHooks:
    return {}, {}


def alignment_by_pair(english: np.ndarray, target: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Per layer and pair, from [L, N, d] English and L2 states -> [L, N] each: ``mutual_knn``, the share
    of the pair's k nearest neighbours that the two spaces agree on, and ``parallel_cosine``, the
    cosine of its two states. A layer's mutual k-NN alignment is the mean of its row."""
    check_knn_ks([k], english.shape[1])
    shares = [
        neighbour_shares(nearest_neighbours(pivot, k), nearest_neighbours(other, k))
        for pivot, other in zip(english, target, strict=True)
    ]
    return {"mutual_knn": np.stack(shares), "parallel_cosine": row_cosines(english, target)}


def alignment_by_layer(english: np.ndarray, target: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Mutual k-NN and mean parallel-pair cosine per layer, from [L, N, d] English and L2 states -> [L] each."""
    return {metric: values.mean(axis=1) for metric, values in alignment_by_pair(english, target, k).items()}


def patch_hooks(neurons: Mapping[int, Sequence[int]], patch: Patch, sources: Mapping[str, np.ndarray]) -> Run:
    """The hooks of one patched run of a set: its unpatched layers scaled, its patched layers set to the
    source's values of the batch's sentences (``sources[source]``: [L, N, d_mlp])."""

    def hooks_for(rows: Sequence[int]) -> RunHooks:
        scaled = {layer: chosen for layer, chosen in neurons.items() if layer not in patch.layers}
        patches = {}
        for layer in patch.layers:
            assert patch.source is not None  # only the corrupted run has none, and it patches no layer
            values = sources[patch.source][layer][np.asarray(rows)][:, neurons[layer]]
            patches[layer] = (neurons[layer], torch.as_tensor(values))
        return scaled, patches

    return hooks_for


def run_name(patch: Patch) -> str:
    return "corrupted" if patch.source is None else f"{patch.source}/{patch.scope}/{patch.patched_layer}"


def patching_tables(
    english: np.ndarray, clean: np.ndarray, patched: Mapping[str, np.ndarray], patches: Sequence[Patch], k: int
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The patching tables of one neuron set, from [L, N, d] English, clean and each run's L2 states.

    Per run, layer and metric: the alignment, its clean and corrupted values and the recovery. Per
    patched run, test pair and metric: the pair's alignment averaged over layers, clean, corrupted and
    patched (``value``), which lets the report resample pairs (their means over pairs are the layer
    means of the first table).
    """
    clean_pairs = alignment_by_pair(english, clean, k)
    corrupted_pairs = alignment_by_pair(english, patched["corrupted"], k)
    layer_rows, pair_frames = [], []
    for patch in patches:
        run_pairs = alignment_by_pair(english, patched[run_name(patch)], k)
        labels = {"source": patch.source, "scope": patch.scope, "patched_layer": patch.patched_layer}
        for metric, values in run_pairs.items():
            clean_layers, corrupted_layers = clean_pairs[metric].mean(axis=1), corrupted_pairs[metric].mean(axis=1)
            for layer, value in enumerate(values.mean(axis=1)):
                gap = clean_layers[layer] - corrupted_layers[layer]
                layer_rows.append({**labels, "layer": layer, "metric": metric, "value": float(value),
                                   "clean": float(clean_layers[layer]), "corrupted": float(corrupted_layers[layer]),
                                   "recovery": float((value - corrupted_layers[layer]) / gap)
                                   if abs(gap) > 1e-12 else None})  # fmt: skip
            if patch.source is not None:  # the corrupted run is every pair row's ``corrupted``
                pair_frames.append(pair_rows(labels, metric, values, clean_pairs[metric], corrupted_pairs[metric]))
    return pl.DataFrame(layer_rows, infer_schema_length=None), pl.concat(pair_frames)


def pair_rows(
    labels: Mapping, metric: str, patched: np.ndarray, clean: np.ndarray, corrupted: np.ndarray
) -> pl.DataFrame:
    """One patched run's rows of the per-pair table, from [L, N] per-layer values of each pair."""
    n_pairs = patched.shape[1]
    return pl.DataFrame(
        {
            "source": [labels["source"]] * n_pairs,
            "scope": [labels["scope"]] * n_pairs,
            "patched_layer": pl.Series([labels["patched_layer"]] * n_pairs, dtype=pl.Int64),
            "pair": np.arange(n_pairs),
            "metric": [metric] * n_pairs,
            "value": patched.mean(axis=0),
            "clean": clean.mean(axis=0),
            "corrupted": corrupted.mean(axis=0),
        }
    )


def evaluate_patching(
    loaded: LoadedModel, pairs: pl.DataFrame, neuron_sets: Mapping[str, Mapping[int, Sequence[int]]],
    mean_activations: np.ndarray, *, factor: float, max_batch_tokens: int, k: int, last_layer: str = "raw",
) -> tuple[pl.DataFrame, pl.DataFrame]:  # fmt: skip
    """The patching tables (per layer, per pair: ``patching_tables``) of every neuron set (``transfer``
    and its control), on the test pairs.

    ``mean_activations`` [L, d_mlp] is each neuron's mean over the language's training sentences.
    """

    def unhooked(sentences: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        return last_token_runs(loaded, sentences, {"clean": no_hooks}, factor, max_batch_tokens, last_layer)["clean"]

    target_sentences = pairs["target_text"].to_list()
    english, english_activations = unhooked(pairs["pivot_text"].to_list())
    clean, clean_activations = unhooked(target_sentences)
    sources = {
        "clean": clean_activations,
        "english": english_activations,
        "mean": np.broadcast_to(mean_activations[:, None, :], clean_activations.shape),
    }
    layer_frames, pair_frames = [], []
    for set_name, neurons in neuron_sets.items():
        patches = patches_of(sorted(neurons))
        runs = {run_name(patch): patch_hooks(neurons, patch, sources) for patch in patches}
        by_run = last_token_runs(loaded, target_sentences, runs, factor, max_batch_tokens, last_layer)
        patched = {name: states for name, (states, _) in by_run.items()}
        by_layer, by_pair = patching_tables(english, clean, patched, patches, k)
        layer_frames.append(by_layer.with_columns(pl.lit(set_name).alias("neuron_set")))
        pair_frames.append(by_pair.with_columns(pl.lit(set_name).alias("neuron_set")))
    by_layer, by_pair = (
        pl.concat(frames).select("neuron_set", pl.exclude("neuron_set")) for frames in (layer_frames, pair_frames)
    )
    return by_layer, by_pair


def patching_sets(conditions: pl.DataFrame, control_seed: int) -> dict[str, dict[int, list[int]]]:
    """The Type-1 transfer neurons, and their control: the magnitude-matched set of ``control_seed``,
    or the random set where there is none."""
    names = set(conditions["condition"].to_list())
    kind = ConditionKind.MAGNITUDE_MATCHED
    if condition_name(kind, NeuronType.TYPE1, control_seed) not in names:
        kind = ConditionKind.RANDOM
    return {
        TRANSFER_SET: condition_neurons(conditions, condition_name(ConditionKind.TRANSFER, NeuronType.TYPE1)),
        condition_group(kind, NeuronType.TYPE1): condition_neurons(
            conditions, condition_name(kind, NeuronType.TYPE1, control_seed)
        ),
    }


def run_patching(
    manifest: Path, test_pairs: Path, train_dump: Path, conditions: Path, *, control_seed: int, factor: float,
    max_batch_tokens: int, knn_k: int, max_pairs: int | None, device: str, labels: dict,
    dtype: str = "auto", last_layer: str = "raw",
) -> tuple[pl.DataFrame, pl.DataFrame]:  # fmt: skip
    """The ``evaluate_patching`` rule for one language: the per-layer and the per-pair patching tables."""
    loaded = load_model(manifest, device, dtype=dtype)
    pairs = kept_pairs(test_pairs)
    pairs = pairs.head(max_pairs) if max_pairs else pairs
    mean_activations = Dump(Path(train_dump) / TARGET_SIDE).all_layers("neuron_activations").mean(axis=1)
    sets = patching_sets(pl.read_parquet(conditions), control_seed)
    by_layer, by_pair = evaluate_patching(
        loaded,
        pairs,
        sets,
        mean_activations,
        factor=factor,
        max_batch_tokens=max_batch_tokens,
        k=knn_k,
        last_layer=last_layer,
    )
    return labelled(by_layer, **labels), labelled(by_pair, **labels)

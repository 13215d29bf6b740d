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
that size would give back.

Deactivation and patching touch the last token only, so every run shares the batch's unscaled
prefix and computes the last token alone, and several runs go through one pass, each on its own
copy of the batch's rows (at the default sizes, a set's 43 runs take 2 passes instead of 43).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import torch
from tqdm import tqdm

from transfer_neurons.data.dumps import Dump, kept_pairs
from transfer_neurons.data.tidy import labelled
from transfer_neurons.evaluation.alignment import mutual_knn_alignment, row_cosines
from transfer_neurons.evaluation.conditions import condition_neurons
from transfer_neurons.model.batching import (
    TokenizedBatch,
    last_token_forward,
    length_sorted_batches,
    prefix_cache,
    token_lengths,
    tokenize,
)
from transfer_neurons.model.hooks import LastTokenEdits, capture_states, last_token_edits
from transfer_neurons.model.loading import LoadedModel, load_model
from transfer_neurons.names import TARGET_SIDE, ConditionKind, NeuronType, condition_name

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
RunHooks = LastTokenEdits


def last_token_runs(
    loaded: LoadedModel, sentences: Sequence[str], runs: Mapping[str, callable], factor: float,
    max_batch_tokens: int | None,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:  # fmt: skip
    """Layer outputs [L, N, d] and neuron activations [L, N, d_mlp] at the last token, for each named run.

    ``runs[name](rows)`` gives the run's ``RunHooks`` for the batch of sentence indices ``rows``;
    every run continues from the batch's unscaled prefix. A run computes one token per row, so
    batches are as wide as ``max_batch_tokens`` allows for the prefix, and several runs share one
    forward pass, each on its own copy of the batch's rows (``runs_per_pass``).
    """
    batches = length_sorted_batches(token_lengths(loaded.tokenizer, sentences), len(sentences), max_batch_tokens)
    names = list(runs)
    outputs = {name: [] for name in names}
    activations = {name: [] for name in names}
    for rows in tqdm(batches, desc=f"{len(runs)} runs x batches", unit="batch"):
        batch = tokenize(loaded.tokenizer, [sentences[row] for row in rows]).to(loaded.device)
        with torch.no_grad():
            cache = prefix_cache(loaded.model, batch)
        stack = runs_per_pass(batch.input_ids.numel(), len(names), max_batch_tokens)
        for first in range(0, len(names), stack):
            group = names[first : first + stack]
            group_hooks = [runs[name](rows) for name in group]
            states = stacked_last_token_pass(loaded, batch, cache, group_hooks, factor)
            for index, name in enumerate(group):
                # Row r of the group's index-th run is row r * len(group) + index of the stacked pass.
                outputs[name].append(states.layer_output[:, index :: len(group)].cpu().numpy())
                activations[name].append(states.neuron_activations[:, index :: len(group)].cpu().numpy())
    corpus_order = np.argsort(np.concatenate([np.asarray(rows) for rows in batches]))
    return {
        name: (
            np.concatenate(outputs[name], axis=1)[:, corpus_order],
            np.concatenate(activations[name], axis=1)[:, corpus_order],
        )
        for name in runs
    }


def runs_per_pass(batch_tokens: int, n_runs: int, max_batch_tokens: int | None) -> int:
    """How many runs share one last-token pass: their copies of the prefix cache together hold at
    most ``max_batch_tokens`` tokens, as the batch's own prefix does."""
    if max_batch_tokens is None:
        return max(n_runs, 1)
    return max(1, min(n_runs, max_batch_tokens // max(batch_tokens, 1)))


def stacked_last_token_pass(loaded: LoadedModel, batch, cache, group_hooks: Sequence[RunHooks], factor: float):
    """One last-token pass of ``len(group_hooks)`` runs over copies of the batch -> ``CapturedStates``.

    Rows are repeated in place (``batch_repeat_interleave``, as beam search lays them out): row r of
    run k is row r * K + k.
    """
    copies = len(group_hooks)
    stacked_cache = copy.deepcopy(cache)
    stacked_cache.batch_repeat_interleave(copies)
    stacked = TokenizedBatch(
        batch.input_ids.repeat_interleave(copies, dim=0), batch.attention_mask.repeat_interleave(copies, dim=0)
    )
    with (
        torch.no_grad(),
        last_token_edits(loaded.adapter, group_hooks, factor),
        capture_states(loaded.adapter) as captured,
    ):
        last_token_forward(loaded.model, stacked, stacked_cache)
    return captured["states"]


def no_hooks(rows) -> RunHooks:
    return {}, {}


def alignment_by_layer(english: np.ndarray, target: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Mutual k-NN and mean parallel-pair cosine per layer, from [L, N, d] English and L2 states."""
    return {
        "mutual_knn": np.array([mutual_knn_alignment(e, t, k) for e, t in zip(english, target, strict=True)]),
        "parallel_cosine": row_cosines(english, target).mean(axis=1),
    }


def patch_hooks(neurons: Mapping[int, Sequence[int]], patch: Patch, sources: Mapping[str, np.ndarray]):
    """The hooks of one patched run of a set: its unpatched layers scaled, its patched layers set to the
    source's values of the batch's sentences (``sources[source]``: [L, N, d_mlp])."""

    def hooks_for(rows) -> RunHooks:
        scaled = {layer: chosen for layer, chosen in neurons.items() if layer not in patch.layers}
        patches = {}
        for layer in patch.layers:
            values = sources[patch.source][layer][np.asarray(rows)][:, neurons[layer]]
            patches[layer] = (neurons[layer], torch.as_tensor(values))
        return scaled, patches

    return hooks_for


def run_name(patch: Patch) -> str:
    return "corrupted" if patch.source is None else f"{patch.source}/{patch.scope}/{patch.patched_layer}"


def patching_table(
    english: np.ndarray, clean: np.ndarray, patched: Mapping[str, np.ndarray], patches: Sequence[Patch], k: int
) -> pl.DataFrame:
    """Per run, layer and metric: the alignment, its clean and corrupted values and the recovery."""
    clean_alignment = alignment_by_layer(english, clean, k)
    corrupted_alignment = alignment_by_layer(english, patched["corrupted"], k)
    rows = []
    for patch in patches:
        alignment = alignment_by_layer(english, patched[run_name(patch)], k)
        for metric, values in alignment.items():
            for layer, value in enumerate(values):
                gap = clean_alignment[metric][layer] - corrupted_alignment[metric][layer]
                rows.append({"source": patch.source, "scope": patch.scope, "patched_layer": patch.patched_layer,
                             "layer": layer, "metric": metric, "value": float(value),
                             "clean": float(clean_alignment[metric][layer]),
                             "corrupted": float(corrupted_alignment[metric][layer]),
                             "recovery": float((value - corrupted_alignment[metric][layer]) / gap)
                             if abs(gap) > 1e-12 else None})  # fmt: skip
    return pl.DataFrame(rows, infer_schema_length=None)


def evaluate_patching(
    loaded: LoadedModel, pairs: pl.DataFrame, neuron_sets: Mapping[str, Mapping[int, Sequence[int]]],
    mean_activations: np.ndarray, *, factor: float, max_batch_tokens: int, k: int,
) -> pl.DataFrame:  # fmt: skip
    """The patching table of every neuron set (``transfer`` and its control), on the test pairs.

    ``mean_activations`` [L, d_mlp] is each neuron's mean over the language's training sentences.
    """

    def unhooked(sentences):
        return last_token_runs(loaded, sentences, {"clean": no_hooks}, factor, max_batch_tokens)["clean"]

    target_sentences = pairs["target_text"].to_list()
    english, english_activations = unhooked(pairs["pivot_text"].to_list())
    clean, clean_activations = unhooked(target_sentences)
    sources = {
        "clean": clean_activations,
        "english": english_activations,
        "mean": np.broadcast_to(mean_activations[:, None, :], clean_activations.shape),
    }
    frames = []
    for set_name, neurons in neuron_sets.items():
        patches = patches_of(sorted(neurons))
        runs = {run_name(patch): patch_hooks(neurons, patch, sources) for patch in patches}
        patched = {name: states for name, (states, _) in last_token_runs(loaded, target_sentences, runs, factor,
                                                                         max_batch_tokens).items()}  # fmt: skip
        table = patching_table(english, clean, patched, patches, k)
        frames.append(table.with_columns(pl.lit(set_name).alias("neuron_set")))
    return pl.concat(frames).select("neuron_set", pl.exclude("neuron_set"))


def patching_sets(conditions: pl.DataFrame, control_seed: int) -> dict[str, dict[int, list[int]]]:
    """The Type-1 transfer neurons, and their control: the magnitude-matched set of ``control_seed``,
    or the random set where there is none."""
    names = set(conditions["condition"].to_list())
    control = condition_name(ConditionKind.MAGNITUDE_MATCHED, NeuronType.TYPE1, control_seed)
    if control not in names:
        control = condition_name(ConditionKind.RANDOM, NeuronType.TYPE1, control_seed)
    return {
        "transfer": condition_neurons(conditions, NeuronType.TYPE1.value),
        control.rsplit("_s", 1)[0]: condition_neurons(conditions, control),
    }


def run_patching(
    manifest: Path, test_pairs: Path, train_dump: Path, conditions: Path, *, control_seed: int, factor: float,
    max_batch_tokens: int, knn_k: int, max_pairs: int | None, device: str, labels: dict,
) -> pl.DataFrame:  # fmt: skip
    """The ``evaluate_patching`` rule for one language."""
    loaded = load_model(manifest, device)
    pairs = kept_pairs(test_pairs)
    pairs = pairs.head(max_pairs) if max_pairs else pairs
    mean_activations = Dump(Path(train_dump) / TARGET_SIDE).all_layers("neuron_activations").mean(axis=1)
    sets = patching_sets(pl.read_parquet(conditions), control_seed)
    table = evaluate_patching(
        loaded, pairs, sets, mean_activations, factor=factor, max_batch_tokens=max_batch_tokens, k=knn_k
    )
    return labelled(table, **labels)

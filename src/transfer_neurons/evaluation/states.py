"""The state analysis: English-L2 alignment of last-token states under every intervention condition.

English (pivot) states are never intervened on, so they come from the test dump once; only the
L2 side is recomputed under each condition.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import torch
from safetensors.numpy import save_file
from tqdm import tqdm

from transfer_neurons.data.dumps import Dump, kept_pairs
from transfer_neurons.data.tidy import labelled
from transfer_neurons.evaluation.alignment import (
    check_knn_ks,
    derangement,
    nearest_neighbours,
    neighbour_shares,
    paired_cosines,
    row_cosines,
)
from transfer_neurons.evaluation.conditions import (
    InterventionSettings,
    condition_info,
    condition_names,
    condition_neurons,
)
from transfer_neurons.model.batching import (
    TokenizedBatch,
    decoder_forward,
    last_token_forward,
    length_sorted_batches,
    prefix_cache,
    token_lengths,
    tokenize,
)
from transfer_neurons.model.hooks import (
    capture_states,
    recording_layer_outputs,
    replaying_layer_outputs,
    scaled_neurons,
    touches_only_last_token,
)
from transfer_neurons.model.loading import LoadedModel, load_model
from transfer_neurons.names import ACTIVATION_COSINE, PIVOT_SIDE, STATE_COSINE, cosine_metric, knn_metric


def first_touched_layer(neurons: Mapping[int, Sequence[int]], n_layers: int) -> int:
    """The lowest layer with a scaled neuron (``n_layers`` when none is)."""
    return min((layer for layer, chosen in neurons.items() if len(chosen)), default=n_layers)


def batch_states_by_condition(
    loaded: LoadedModel, batch: TokenizedBatch, neuron_sets: Mapping[str, Mapping[int, Sequence[int]]], settings
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Last-token layer outputs and activations [L, batch, ...] of one batch under every condition.

    Where no condition reaches a token before the last (``last``, ``prompt_last``), the batch's
    prefix runs once and every condition runs only the last token from its cache; otherwise
    layers below a condition's first scaled neuron are replayed from one normal pass.
    """
    if touches_only_last_token(settings.positions) and batch.input_ids.shape[1] > 1:
        return states_from_shared_prefix(loaded, batch, neuron_sets, settings)
    return states_with_replay(loaded, batch, neuron_sets, settings)


def states_from_shared_prefix(loaded: LoadedModel, batch: TokenizedBatch, neuron_sets, settings):
    """Every condition continues from one copy of the unscaled prefix cache, on the last token only."""
    with torch.no_grad():
        cache = prefix_cache(loaded.model, batch)
    results = {}
    for name, neurons in neuron_sets.items():
        with (
            torch.no_grad(),
            scaled_neurons(loaded.adapter, neurons, settings.factor, settings.positions),
            capture_states(loaded.adapter) as captured,
        ):
            last_token_forward(loaded.model, batch, copy.deepcopy(cache))
        results[name] = (captured["states"].layer_output, captured["states"].neuron_activations)
    return results


def states_with_replay(loaded: LoadedModel, batch: TokenizedBatch, neuron_sets, settings):
    """One normal pass records each layer's output; a condition whose first scaled neuron is in
    layer k replays layers 0..k-1 from that record and computes only the rest."""
    model, adapter = loaded.model, loaded.adapter
    n_layers = adapter.facts.n_layers
    with torch.no_grad(), recording_layer_outputs(adapter) as recorded, capture_states(adapter) as captured:
        decoder_forward(model, batch)
    normal = captured["states"]
    results = {}
    for name, neurons in neuron_sets.items():
        first = first_touched_layer(neurons, n_layers)
        if first == n_layers:
            results[name] = (normal.layer_output, normal.neuron_activations)
            continue
        replayed = {layer: recorded[layer] for layer in range(first)}
        with (
            torch.no_grad(),
            replaying_layer_outputs(adapter, replayed),
            scaled_neurons(adapter, neurons, settings.factor, settings.positions),
            capture_states(adapter, layers=range(first, n_layers)) as captured,
        ):
            decoder_forward(model, batch)
        computed = captured["states"]
        results[name] = (
            torch.cat([normal.layer_output[:first], computed.layer_output]),
            torch.cat([normal.neuron_activations[:first], computed.neuron_activations]),
        )
    return results


@dataclass
class ConditionStates:
    """What the state metrics need of one condition's L2 test sentences.

    Activations are reduced to per-pair cosines as batches arrive ([L, d_mlp] per sentence
    is the largest array; keeping it for every condition would not fit at paper scale).
    """

    layer_output: np.ndarray  # [L, N, d_model]
    activation_cosines: dict[str, np.ndarray]  # pairing ("parallel" / "non_parallel") -> [L, N]


def states_by_condition(
    loaded: LoadedModel, sentences: Sequence[str], neuron_sets, settings: InterventionSettings,
    pivot_activations: np.ndarray,
) -> dict[str, ConditionStates]:  # fmt: skip
    """Last-token layer outputs of ``sentences`` per condition, and the cosine of each sentence's
    activation pattern with its English pair's (``pivot_activations`` [L, N, d_mlp]) and with the
    non-parallel English sentence that ``derangement`` pairs it with."""
    tokenizer = loaded.tokenizer
    partner = {"parallel": np.arange(len(sentences)), "non_parallel": np.argsort(derangement(len(sentences)))}
    outputs: dict[str, list] = {name: [] for name in neuron_sets}
    cosines = {name: {pairing: [] for pairing in partner} for name in neuron_sets}
    # Runs that share the prefix compute one token per row: a batch as wide as the token budget
    # allows keeps those small matrix products efficient.
    width = len(sentences) if touches_only_last_token(settings.positions) else settings.batch_size
    batches = length_sorted_batches(token_lengths(tokenizer, sentences), width, settings.max_batch_tokens)
    with tqdm(total=len(batches), desc="state batches", unit="batch") as progress:
        for rows in batches:
            batch = tokenize(tokenizer, [sentences[row] for row in rows]).to(loaded.device)
            for name, (layer_output, activations) in batch_states_by_condition(
                loaded, batch, neuron_sets, settings
            ).items():
                outputs[name].append(layer_output.cpu().numpy())
                activations = activations.cpu().numpy()
                for pairing, partners in partner.items():
                    cosines[name][pairing].append(row_cosines(pivot_activations[:, partners[rows]], activations))
            progress.update(1)
    # Batches ran in length order; results go back to corpus order.
    corpus_order = np.argsort(np.concatenate([np.asarray(rows) for rows in batches]))
    return {
        name: ConditionStates(
            np.concatenate(outputs[name], axis=1)[:, corpus_order],
            {pairing: np.concatenate(parts, axis=1)[:, corpus_order] for pairing, parts in cosines[name].items()},
        )
        for name in neuron_sets
    }


def alignment_of(
    pivot_neighbours: Sequence[np.ndarray], pivot_states: np.ndarray, target: ConditionStates, knn_ks
) -> tuple[list[dict], dict[str, np.ndarray]]:
    """The alignment of one condition's L2 states with the English ones.

    Returns per-layer records (layer, metric, value) and per-pair values averaged over layers
    (``knn_share`` for the first k, ``parallel_cosine``: [N] each), which let the report pair a
    condition with another by sentence. ``pivot_neighbours[layer]`` are the English rows' nearest
    neighbours (at least max(knn_ks) of them), the same under every condition.
    """
    records = []
    pair_shares, pair_cosines = [], []
    for layer in range(pivot_states.shape[0]):
        target_states = target.layer_output[layer]
        target_neighbours = nearest_neighbours(target_states, max(knn_ks))
        shares = {k: neighbour_shares(pivot_neighbours[layer][:, :k], target_neighbours[:, :k]) for k in knn_ks}
        values = {knn_metric(k): float(per_row.mean()) for k, per_row in shares.items()}
        cosines = paired_cosines(pivot_states[layer], target_states)
        values.update({cosine_metric(STATE_COSINE, pairing): value for pairing, value in cosines.items()})
        values.update(
            {
                cosine_metric(ACTIVATION_COSINE, pairing): float(per_row[layer].mean())
                for pairing, per_row in target.activation_cosines.items()
            }
        )
        records.extend({"layer": layer, "metric": name, "value": value} for name, value in values.items())
        pair_shares.append(shares[knn_ks[0]])
        pair_cosines.append(row_cosines(pivot_states[layer], target_states))
    per_pair = {"knn_share": np.mean(pair_shares, axis=0), "parallel_cosine": np.mean(pair_cosines, axis=0)}
    return records, per_pair


def evaluate_states(
    loaded: LoadedModel,
    test_dump: Dump,
    target_sentences: Sequence[str],
    conditions: pl.DataFrame,
    settings: InterventionSettings,
    knn_ks: Sequence[int],
) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, np.ndarray]]:
    """Alignment metrics per condition and layer, per condition and pair, and each condition's L2
    centroids [L, d]."""
    pivot_states = test_dump.all_layers("layer_output")
    pivot_acts = test_dump.all_layers("neuron_activations")
    if pivot_states.shape[1] != len(target_sentences):
        raise ValueError(
            f"{test_dump.directory}: {pivot_states.shape[1]} English rows but {len(target_sentences)} L2 sentences"
        )
    check_knn_ks(knn_ks, pivot_states.shape[1])
    pivot_neighbours = [nearest_neighbours(layer_states, max(knn_ks)) for layer_states in pivot_states]
    neuron_sets = {name: condition_neurons(conditions, name) for name in condition_names(conditions)}
    states = states_by_condition(loaded, target_sentences, neuron_sets, settings, pivot_acts)
    records, pair_frames, centroids = [], [], {}
    for condition, target in states.items():
        centroids[condition] = target.layer_output.mean(axis=1)
        layer_records, per_pair = alignment_of(pivot_neighbours, pivot_states, target, knn_ks)
        records.extend({"condition": condition, **record} for record in layer_records)
        pair_frames.append(pl.DataFrame({"condition": condition, "pair": np.arange(len(target_sentences)), **per_pair}))
    info = condition_info(conditions)
    metrics = pl.DataFrame(records).join(info, on="condition", how="left")
    pairs = pl.concat(pair_frames).join(info, on="condition", how="left")
    return metrics, pairs, centroids


def run_state_evaluation(
    manifest: Path, test_pairs: Path, test_dump: Path, conditions: Path, settings: InterventionSettings, *,
    knn_ks, device: str, labels: dict, arrays_path: Path,
) -> tuple[pl.DataFrame, pl.DataFrame]:  # fmt: skip
    """Alignment metrics per layer and per pair under every condition; saves the L2 test centroids
    [L, d] per condition."""
    loaded = load_model(manifest, device)
    target_sentences = kept_pairs(test_pairs)["target_text"].to_list()
    table = pl.read_parquet(conditions)
    metrics, pairs, centroids = evaluate_states(
        loaded, Dump(Path(test_dump) / PIVOT_SIDE), target_sentences, table, settings, knn_ks
    )
    save_file(condition_centroid_arrays(centroids), str(arrays_path))
    return labelled(metrics, **labels), labelled(pairs, **labels)


def condition_centroid_arrays(centroids: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The safetensors entries of each condition's L2 test centroids [L, d]: ``centroid/{condition}``."""
    return {condition_centroid_key(name): value.astype(np.float32) for name, value in centroids.items()}


def condition_centroid_key(condition: str) -> str:
    return f"centroid/{condition}"

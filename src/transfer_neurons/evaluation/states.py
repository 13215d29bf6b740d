"""The state analysis: English-L2 alignment of last-token states under every intervention condition.

English (pivot) states are never intervened on, so they come from the test dump once; only the
L2 side is recomputed under each condition.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import torch
from safetensors.numpy import save_file
from tqdm import tqdm

from transfer_neurons.data.dumps import Dump, check_last_layer, kept_pairs, with_last_layer
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
    condition_runs,
)
from transfer_neurons.model.batching import (
    TokenizedBatch,
    copies_per_pass,
    decoder_forward,
    length_sorted_batches,
    pass_groups,
    prefix_cache,
    stacked_rows,
    token_lengths,
    tokenize,
)
from transfer_neurons.model.hooks import (
    CapturedStates,
    HookSession,
    NeuronEdit,
    last_token_states,
    touches_only_last_token,
)
from transfer_neurons.model.loading import LoadedModel, load_model
from transfer_neurons.names import ACTIVATION_COSINE, PIVOT_SIDE, STATE_COSINE, cosine_metric, knn_metric


def batch_states_by_run(
    loaded: LoadedModel, batch: TokenizedBatch, runs: Mapping[str, NeuronEdit], max_batch_tokens: int | None,
    last_layer: str = "raw",
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:  # fmt: skip
    """Last-token layer states and activations [L, batch, ...] of one batch under every run (a condition's
    ``NeuronEdit``), the runs as rows of shared passes (as many as ``max_batch_tokens`` allows).

    Where no run reaches a token before the last (``last``, ``prompt_last``), the batch's prefix runs
    once and the runs continue on the last token from copies of its cache; otherwise layers below the
    runs' first scaled neuron are replayed from one normal pass. ``last_layer`` (``runtime.last_layer``)
    says how the last layer's state is read: ``normed`` is the final norm's output (HF's
    ``hidden_states[-1]``, the paper's), ``raw`` the layer's own output.
    """
    normed = check_last_layer(last_layer) == "normed"
    if all(touches_only_last_token(edit.positions) for edit in runs.values()) and batch.input_ids.shape[1] > 1:
        states = states_from_shared_prefix(loaded, batch, runs, max_batch_tokens, normed)
    else:
        states = states_with_replay(loaded, batch, runs, max_batch_tokens, normed)
    return {
        name: (with_last_layer(found.layer_output, found.final_normed, last_layer), found.neuron_activations)
        for name, found in states.items()
    }


def states_from_shared_prefix(
    loaded: LoadedModel, batch: TokenizedBatch, runs: Mapping[str, NeuronEdit], max_batch_tokens: int | None,
    final_norm: bool,
) -> dict[str, CapturedStates]:  # fmt: skip
    """Every run continues from its own copy of the unscaled prefix cache, on the last token only."""
    with torch.no_grad():
        prefix = prefix_cache(loaded.model, batch)
    names = list(runs)
    rows, width = batch.input_ids.shape
    per_pass = copies_per_pass(rows, width, len(names), max_batch_tokens)
    results: dict[str, CapturedStates] = {}
    for group in pass_groups(names, per_pass):
        edits = [runs[name] for name in group]
        captured = last_token_states(loaded.model, loaded.adapter, batch, prefix, edits, final_norm=final_norm)
        results.update(zip(group, captured, strict=True))
    return results


def states_with_replay(
    loaded: LoadedModel, batch: TokenizedBatch, runs: Mapping[str, NeuronEdit], max_batch_tokens: int | None,
    final_norm: bool,
) -> dict[str, CapturedStates]:  # fmt: skip
    """One normal pass records each layer's output; the runs of a stacked pass replay the layers below
    their first edited layer from that record (each row repeated per run) and compute only the rest."""
    model, adapter = loaded.model, loaded.adapter
    n_layers = adapter.facts.n_layers
    with torch.no_grad(), HookSession(adapter) as session:
        recorded = session.record_layers()
        capture = session.capture(final_norm=final_norm)
        decoder_forward(model, batch)
    normal = capture.states
    first_layer = {name: min(edit.layers(), default=n_layers) for name, edit in runs.items()}
    results = {name: normal for name, first in first_layer.items() if first == n_layers}
    edited = sorted((name for name in runs if name not in results), key=first_layer.__getitem__)
    rows, width = batch.input_ids.shape
    per_pass = copies_per_pass(rows, width, len(edited), max_batch_tokens)
    for group in pass_groups(edited, per_pass):
        first, copies = first_layer[group[0]], len(group)  # sorted: the group's lowest first layer
        with torch.no_grad(), HookSession(adapter) as session:
            session.replay_layers({layer: recorded[layer] for layer in range(first)}, copies=copies)
            session.edit_neurons([runs[name] for name in group])
            capture = session.capture(layers=range(first, n_layers), final_norm=final_norm)
            decoder_forward(model, stacked_rows(batch, copies))
        for index, name in enumerate(group):
            computed = capture.states.rows(index, copies)
            # Below its own first edited layer a run's states are the normal ones, exactly.
            own = first_layer[name]
            spliced = {
                part: torch.cat([getattr(normal, part)[:own], getattr(computed, part)[own - first :]])
                for part in ("layer_output", "mlp_contribution", "neuron_activations", "write_scale")
            }
            results[name] = CapturedStates(**spliced, final_normed=computed.final_normed)  # fmt: skip
    return results


@dataclass
class ConditionStates:
    """What the state metrics need of one condition's L2 test sentences.

    Activations are reduced to per-pair cosines as batches arrive ([L, d_mlp] per sentence
    is the largest array; keeping it for every condition would not fit at paper scale).
    """

    layer_output: np.ndarray  # [L, N, d_model]
    activation_cosines: dict[str, np.ndarray]  # pairing ("parallel" / "non_parallel") -> [L, N]


def states_by_run(
    loaded: LoadedModel, sentences: Sequence[str], runs: Mapping[str, NeuronEdit], *, batch_size: int,
    max_batch_tokens: int | None, pivot_activations: np.ndarray, last_layer: str = "raw",
) -> dict[str, ConditionStates]:  # fmt: skip
    """Last-token layer states of ``sentences`` per run (the last layer read as ``last_layer`` says),
    and the cosine of each sentence's activation pattern with its English pair's (``pivot_activations``
    [L, N, d_mlp]) and with the non-parallel English sentence that ``derangement`` pairs it with."""
    tokenizer = loaded.tokenizer
    partner = {"parallel": np.arange(len(sentences)), "non_parallel": np.argsort(derangement(len(sentences)))}
    outputs: dict[str, list] = {name: [] for name in runs}
    cosines: dict[str, dict[str, list[np.ndarray]]] = {name: {pairing: [] for pairing in partner} for name in runs}
    # Runs that share the prefix compute one token per row: a batch as wide as the token budget
    # allows keeps those small matrix products efficient.
    last_only = all(touches_only_last_token(edit.positions) for edit in runs.values())
    width = len(sentences) if last_only else batch_size
    batches = length_sorted_batches(token_lengths(tokenizer, sentences), width, max_batch_tokens)
    with tqdm(total=len(batches), desc="state batches", unit="batch") as progress:
        for rows in batches:
            batch = tokenize(tokenizer, [sentences[row] for row in rows]).to(loaded.device)
            for name, (layer_output, activations) in batch_states_by_run(
                loaded, batch, runs, max_batch_tokens, last_layer
            ).items():
                outputs[name].append(layer_output.cpu().numpy())
                target_activations = activations.cpu().numpy()
                for pairing, partners in partner.items():
                    cosines[name][pairing].append(row_cosines(pivot_activations[:, partners[rows]], target_activations))
            progress.update(1)
    # Batches ran in length order; results go back to corpus order.
    corpus_order = np.argsort(np.concatenate([np.asarray(rows) for rows in batches]))
    return {
        name: ConditionStates(
            np.concatenate(outputs[name], axis=1)[:, corpus_order],
            {pairing: np.concatenate(parts, axis=1)[:, corpus_order] for pairing, parts in cosines[name].items()},
        )
        for name in runs
    }


def alignment_of(
    pivot_neighbours: Sequence[np.ndarray], pivot_states: np.ndarray, target: ConditionStates, knn_ks: Sequence[int]
) -> tuple[list[dict], dict[str, np.ndarray]]:
    """The alignment of one condition's L2 states with the English ones.

    Returns per-layer records (layer, metric, value) and per-pair values averaged over layers
    (``knn_share`` for the first k, ``parallel_cosine``: [N] each), which let the report pair a
    condition with another by sentence. ``pivot_neighbours[layer]`` are the English rows' nearest
    neighbours (at least max(knn_ks) of them), the same under every condition.
    """
    records: list[dict] = []
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
    last_layer: str = "raw",
) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, np.ndarray]]:
    """Alignment metrics per condition and layer, per condition and pair, and each condition's L2
    centroids [L, d]; the last layer of both sides read as ``last_layer`` (``runtime.last_layer``) says."""
    pivot_states = test_dump.layer_states(last_layer)
    pivot_acts = test_dump.all_layers("neuron_activations")
    if pivot_states.shape[1] != len(target_sentences):
        raise ValueError(
            f"{test_dump.directory}: {pivot_states.shape[1]} English rows but {len(target_sentences)} L2 sentences"
        )
    check_knn_ks(knn_ks, pivot_states.shape[1])
    pivot_neighbours = [nearest_neighbours(layer_states, max(knn_ks)) for layer_states in pivot_states]
    runs = condition_runs(conditions, settings)
    states = states_by_run(loaded, target_sentences, runs, batch_size=settings.batch_size,
                           max_batch_tokens=settings.max_batch_tokens, pivot_activations=pivot_acts,
                           last_layer=last_layer)  # fmt: skip
    records: list[dict] = []
    pair_frames: list[pl.DataFrame] = []
    centroids: dict[str, np.ndarray] = {}
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
    knn_ks: Sequence[int], device: str, labels: dict, arrays_path: Path, dtype: str = "auto", last_layer: str = "raw",
) -> tuple[pl.DataFrame, pl.DataFrame]:  # fmt: skip
    """Alignment metrics per layer and per pair under every condition; saves the L2 test centroids
    [L, d] per condition, recording which last layer they hold."""
    loaded = load_model(manifest, device, dtype=dtype)
    target_sentences = kept_pairs(test_pairs)["target_text"].to_list()
    table = pl.read_parquet(conditions)
    metrics, pairs, centroids = evaluate_states(
        loaded, Dump(Path(test_dump) / PIVOT_SIDE), target_sentences, table, settings, knn_ks, last_layer
    )
    save_file(condition_centroid_arrays(centroids), str(arrays_path), metadata={"last_layer": last_layer})
    return labelled(metrics, **labels), labelled(pairs, **labels)


def condition_centroid_arrays(centroids: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The safetensors entries of each condition's L2 test centroids [L, d]: ``centroid/{condition}``."""
    return {condition_centroid_key(name): value.astype(np.float32) for name, value in centroids.items()}


def condition_centroid_key(condition: str) -> str:
    return f"centroid/{condition}"

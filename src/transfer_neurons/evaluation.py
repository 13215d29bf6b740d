"""The evaluation stages: each runs every intervention condition and returns tidy tables.

English (pivot) states are never intervened on, so they come from the test dump once;
only the L2 side is recomputed under each condition.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
import torch
from tqdm import tqdm

from transfer_neurons.attention import entropy, jensen_shannon
from transfer_neurons.batching import TokenizedBatch, batches, decoder_forward, length_sorted_order, tokenize
from transfer_neurons.capture import capture_states
from transfer_neurons.conditions import condition_info, condition_names, condition_neurons
from transfer_neurons.dumps import Dump
from transfer_neurons.interventions import scaled_neurons
from transfer_neurons.qa import best_f1
from transfer_neurons.replay import recording_layer_outputs, replaying_layer_outputs
from transfer_neurons.similarity import (
    check_knn_ks,
    derangement,
    nearest_neighbours,
    paired_cosines,
    row_cosines,
    shared_neighbour_share,
)


@dataclass(frozen=True)
class InterventionSettings:
    positions: str
    factor: float
    batch_size: int
    max_tokens: int


def first_touched_layer(neurons: Mapping[int, Sequence[int]], n_layers: int) -> int:
    """The lowest layer with a scaled neuron (``n_layers`` when none is)."""
    return min((layer for layer, chosen in neurons.items() if len(chosen)), default=n_layers)


def batch_states_by_condition(
    model, adapter, batch: TokenizedBatch, neuron_sets: Mapping[str, Mapping[int, Sequence[int]]], settings
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Last-token layer outputs and activations of one batch under every condition.

    One normal pass records each layer's output; a condition whose first scaled neuron is
    in layer k replays layers 0..k-1 from that record and computes only the rest.
    """
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
    activation_cosines: dict[str, np.ndarray]  # "parallel" / "non_parallel": [L, N]


def states_by_condition(
    model, tokenizer, adapter, sentences: Sequence[str], neuron_sets, settings: InterventionSettings,
    pivot_activations: np.ndarray,
) -> dict[str, ConditionStates]:  # fmt: skip
    """Last-token layer outputs of ``sentences`` per condition, and the cosine of each sentence's
    activation pattern with its English pair's (``pivot_activations`` [L, N, d_mlp]) and with the
    non-parallel English sentence that ``derangement`` pairs it with."""
    device = next(model.parameters()).device
    partner = {"parallel": np.arange(len(sentences)), "non_parallel": np.argsort(derangement(len(sentences)))}
    outputs: dict[str, list] = {name: [] for name in neuron_sets}
    cosines = {name: {kind: [] for kind in partner} for name in neuron_sets}
    order = np.array(length_sorted_order(tokenizer, sentences, settings.max_tokens))
    with tqdm(total=-(-len(sentences) // settings.batch_size), desc="state batches", unit="batch") as progress:
        for _, rows in batches(order, settings.batch_size):
            batch = tokenize(tokenizer, [sentences[row] for row in rows], settings.max_tokens).to(device)
            for name, (layer_output, activations) in batch_states_by_condition(
                model, adapter, batch, neuron_sets, settings
            ).items():
                outputs[name].append(layer_output.cpu().numpy())
                activations = activations.cpu().numpy()
                for kind, partners in partner.items():
                    cosines[name][kind].append(row_cosines(pivot_activations[:, partners[rows]], activations))
            progress.update(1)
    corpus_order = np.argsort(order)  # batches ran in length order; results go back to corpus order
    return {
        name: ConditionStates(
            np.concatenate(outputs[name], axis=1)[:, corpus_order],
            {kind: np.concatenate(parts, axis=1)[:, corpus_order] for kind, parts in cosines[name].items()},
        )
        for name in neuron_sets
    }


def layer_metrics(pivot_neighbours: Sequence[np.ndarray], pivot_states, target: ConditionStates, knn_ks) -> list[dict]:
    """All per-layer alignment metrics for one condition as (layer, metric, value) records.

    ``pivot_neighbours[layer]`` are the English rows' nearest neighbours (at least max(knn_ks)
    of them), the same under every condition.
    """
    records = []
    for layer in range(pivot_states.shape[0]):
        target_states = target.layer_output[layer]
        target_neighbours = nearest_neighbours(target_states, max(knn_ks))
        values = {
            f"mutual_knn_k{k}": shared_neighbour_share(pivot_neighbours[layer][:, :k], target_neighbours[:, :k])
            for k in knn_ks
        }
        cosines = paired_cosines(pivot_states[layer], target_states)
        values.update({f"state_cosine_{kind}": value for kind, value in cosines.items()})
        values.update(
            {
                f"activation_cosine_{kind}": float(per_row[layer].mean())
                for kind, per_row in target.activation_cosines.items()
            }
        )
        records.extend({"layer": layer, "metric": name, "value": value} for name, value in values.items())
    return records


def evaluate_states(
    model,
    tokenizer,
    adapter,
    test_dump: Dump,
    target_sentences: Sequence[str],
    conditions: pl.DataFrame,
    settings: InterventionSettings,
    knn_ks: Sequence[int],
) -> tuple[pl.DataFrame, dict[str, np.ndarray]]:
    """Alignment metrics per condition and layer, and each condition's L2 centroids [L, d]."""
    pivot_states = test_dump.all_layers("layer_output")
    pivot_acts = test_dump.all_layers("neuron_activations")
    if pivot_states.shape[1] != len(target_sentences):
        raise ValueError(
            f"{test_dump.directory}: {pivot_states.shape[1]} English rows but {len(target_sentences)} L2 sentences"
        )
    check_knn_ks(knn_ks, pivot_states.shape[1])
    pivot_neighbours = [nearest_neighbours(layer_states, max(knn_ks)) for layer_states in pivot_states]
    neuron_sets = {name: condition_neurons(conditions, name) for name in condition_names(conditions)}
    states = states_by_condition(model, tokenizer, adapter, target_sentences, neuron_sets, settings, pivot_acts)
    records, centroids = [], {}
    for condition, target in states.items():
        centroids[condition] = target.layer_output.mean(axis=1)
        for record in layer_metrics(pivot_neighbours, pivot_states, target, knn_ks):
            records.append({"condition": condition, **record})
    metrics = pl.DataFrame(records).join(condition_info(conditions), on="condition", how="left")
    return metrics, centroids


def newline_token_ids(tokenizer) -> list[int]:
    """Token ids that are exactly a line break, used to stop answers at the end of a line."""
    ids = tokenizer.encode("\n", add_special_tokens=False)
    return ids if len(ids) == 1 else []


def shares_prompt_prefix(positions: str) -> bool:
    """Whether no intervention in this position mode touches a prompt token before the last.

    Then every condition's keys and values for those tokens equal the normal ones, so the
    prompt prefix is run once per batch and its cache reused by every condition.
    """
    return positions in ("last", "prompt_last")


def prompt_prefix_cache(model, batch: TokenizedBatch):
    """Keys and values of every prompt token but the last, without intervention.

    Positions follow the mask as ``generate()`` numbers left-padded rows, so the cache fits
    its next step.
    """
    prefix = TokenizedBatch(batch.input_ids[:, :-1], batch.attention_mask[:, :-1], batch.n_truncated)
    with torch.no_grad():
        output = model(**prefix.model_inputs(model), use_cache=True, logits_to_keep=1)
    return output.cache


def first_lines(tokenizer, generated: torch.Tensor, prompt_length: int) -> list[str]:
    continuations = tokenizer.batch_decode(generated[:, prompt_length:], skip_special_tokens=True)
    return [text.strip().split("\n")[0].strip() for text in continuations]


def answers_by_condition(
    model,
    tokenizer,
    adapter,
    prompts: Sequence[str],
    neuron_sets: Mapping[str, Mapping[int, Sequence[int]]],
    settings: InterventionSettings,
    max_new_tokens: int,
    *,
    share_prefix: bool | None = None,
) -> dict[str, list[str]]:
    """Greedy, batched answers (first line of the continuation) under each condition's scaled neurons.

    Batches are the outer loop so that, in the position modes that allow it, the prompt prefix
    is computed once per batch for all conditions (``share_prefix`` defaults to that).
    """
    share_prefix = shares_prompt_prefix(settings.positions) if share_prefix is None else share_prefix
    stop_ids = [tokenizer.eos_token_id, *newline_token_ids(tokenizer)]
    answers: dict[str, list[str]] = {name: [] for name in neuron_sets}
    device = next(model.parameters()).device
    n_batches = -(-len(prompts) // settings.batch_size)
    with tqdm(total=n_batches * len(neuron_sets), desc="QA batches x conditions", unit="generation") as progress:
        for _, chunk in batches(list(prompts), settings.batch_size):
            batch = tokenize(tokenizer, chunk, settings.max_tokens).to(device)
            # A one-token prompt has no prefix to share.
            prefix = prompt_prefix_cache(model, batch) if share_prefix and batch.input_ids.shape[1] > 1 else None
            for name, neurons in neuron_sets.items():
                cache = copy.deepcopy(prefix) if prefix is not None else None
                with torch.no_grad(), scaled_neurons(adapter, neurons, settings.factor, settings.positions):
                    generated = model.generate(
                        input_ids=batch.input_ids,
                        attention_mask=batch.attention_mask,
                        cache=cache,
                        max_new_tokens=max_new_tokens,
                        do_sample=False,
                        eos_token_id=stop_ids,
                        pad_token_id=tokenizer.pad_token_id,
                    )
                answers[name].extend(first_lines(tokenizer, generated, batch.input_ids.shape[1]))
                progress.update(1)
    return answers


def evaluate_qa(
    model,
    tokenizer,
    adapter,
    records: list[dict],
    lang: str,
    conditions: pl.DataFrame,
    settings: InterventionSettings,
    *,
    template: str,
    max_new_tokens: int,
) -> pl.DataFrame:
    """One row per (condition, question): the prediction and its MKQA F1."""
    prompts = [template.format(question=record["queries"][lang]) for record in records]
    neuron_sets = {condition: condition_neurons(conditions, condition) for condition in condition_names(conditions)}
    answers = answers_by_condition(model, tokenizer, adapter, prompts, neuron_sets, settings, max_new_tokens)
    rows = [
        {
            "condition": condition,
            "example_id": str(record.get("example_id", "")),
            "prediction": prediction,
            "f1": best_f1(prediction, record["answers"][lang], lang),
        }
        for condition, predictions in answers.items()
        for record, prediction in zip(records, predictions, strict=True)
    ]
    return pl.DataFrame(rows).join(condition_info(conditions), on="condition", how="left")


def last_token_attention(model, tokenizer, sentences: Sequence[str], max_tokens: int) -> np.ndarray:
    """Attention of the last token over key positions: [layer, batch, head, pos] (left-padded)."""
    batch = tokenize(tokenizer, sentences, max_tokens).to(next(model.parameters()).device)
    with torch.no_grad():
        output = decoder_forward(model, batch, output_attentions=True)
    if output.attentions is None or output.attentions[0] is None:
        raise RuntimeError("the model returned no attention weights; load it with attn_implementation='eager'")
    return torch.stack([layer[:, :, -1, :] for layer in output.attentions]).float().cpu().numpy()


def evaluate_attention(
    model, tokenizer, adapter, sentences: Sequence[str], conditions: pl.DataFrame, settings: InterventionSettings
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Per condition, layer and head: mean JS divergence from the normal pattern and mean entropy.

    Also returns the head-averaged attention of the first sentence per condition (the example map).
    """
    names = condition_names(conditions)
    patterns = {}
    for condition in names:
        neurons = condition_neurons(conditions, condition)
        with scaled_neurons(adapter, neurons, settings.factor, settings.positions):
            patterns[condition] = last_token_attention(model, tokenizer, sentences, settings.max_tokens)
    normal = patterns["normal"]
    rows = []
    for condition, pattern in patterns.items():
        divergence = jensen_shannon(pattern, normal).mean(axis=1)  # [layer, head]
        spread = entropy(pattern).mean(axis=1)
        for layer in range(divergence.shape[0]):
            for head in range(divergence.shape[1]):
                rows.append(
                    {
                        "condition": condition,
                        "layer": layer,
                        "head": head,
                        "js_divergence": float(divergence[layer, head]),
                        "entropy": float(spread[layer, head]),
                    }
                )
    example = _example_attention(tokenizer, sentences[0], patterns, settings.max_tokens)
    info = condition_info(conditions)
    return pl.DataFrame(rows).join(info, on="condition", how="left"), example


def _example_attention(tokenizer, sentence: str, patterns: dict[str, np.ndarray], max_tokens: int) -> pl.DataFrame:
    ids = tokenize(tokenizer, [sentence], max_tokens).input_ids[0].tolist()
    tokens = [tokenizer.decode([token_id]) for token_id in ids]
    rows = []
    for condition, pattern in patterns.items():
        weights = pattern[:, 0, :, -len(ids) :].mean(axis=1)  # [layer, pos] of the first sentence
        for layer in range(weights.shape[0]):
            for position, token in enumerate(tokens):
                rows.append(
                    {
                        "condition": condition,
                        "layer": layer,
                        "position": position,
                        "token": f"{position}:{token}",
                        "weight": float(weights[layer, position]),
                    }
                )
    return pl.DataFrame(rows)

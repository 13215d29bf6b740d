"""The evaluation stages: each runs every intervention condition and returns tidy tables.

English (pivot) states are never intervened on, so they come from the test dump once;
only the L2 side is recomputed under each condition.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
import torch
from tqdm import tqdm

from transfer_neurons.attention import entropy, jensen_shannon
from transfer_neurons.batching import batches, tokenize
from transfer_neurons.conditions import condition_info, condition_names, condition_neurons
from transfer_neurons.dumps import Dump, last_token_states
from transfer_neurons.interventions import scaled_neurons
from transfer_neurons.qa import best_f1
from transfer_neurons.similarity import mutual_knn_alignment, paired_cosines


@dataclass(frozen=True)
class InterventionSettings:
    positions: str
    factor: float
    batch_size: int
    max_tokens: int


def states_under(model, tokenizer, adapter, sentences: Sequence[str], neurons, settings: InterventionSettings):
    """Last-token layer outputs [L, N, d] and activations [L, N, d_mlp] with ``neurons`` scaled."""
    outputs, activations = [], []
    for _, chunk in batches(list(sentences), settings.batch_size):
        with scaled_neurons(adapter, neurons, settings.factor, settings.positions):
            states, _ = last_token_states(model, tokenizer, adapter, chunk, settings.max_tokens)
        outputs.append(states.layer_output.numpy())
        activations.append(states.neuron_activations.numpy())
    return np.concatenate(outputs, axis=1), np.concatenate(activations, axis=1)


def layer_metrics(pivot_states, target_states, pivot_acts, target_acts, knn_ks: Sequence[int]) -> list[dict]:
    """All per-layer alignment metrics for one condition as (layer, metric, value) records."""
    records = []
    for layer in range(pivot_states.shape[0]):
        values = {
            f"mutual_knn_k{k}": mutual_knn_alignment(pivot_states[layer], target_states[layer], k) for k in knn_ks
        }
        cosines = paired_cosines(pivot_states[layer], target_states[layer])
        values.update({f"state_cosine_{kind}": value for kind, value in cosines.items()})
        patterns = paired_cosines(pivot_acts[layer], target_acts[layer])
        values.update({f"activation_cosine_{kind}": value for kind, value in patterns.items()})
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
    records, centroids = [], {}
    for condition in tqdm(condition_names(conditions), desc="conditions", unit="condition"):
        neurons = condition_neurons(conditions, condition)
        target_states, target_acts = states_under(model, tokenizer, adapter, target_sentences, neurons, settings)
        centroids[condition] = target_states.mean(axis=1)
        for record in layer_metrics(pivot_states, target_states, pivot_acts, target_acts, knn_ks):
            records.append({"condition": condition, **record})
    metrics = pl.DataFrame(records).join(condition_info(conditions), on="condition", how="left")
    return metrics, centroids


def newline_token_ids(tokenizer) -> list[int]:
    """Token ids that are exactly a line break, used to stop answers at the end of a line."""
    ids = tokenizer.encode("\n", add_special_tokens=False)
    return ids if len(ids) == 1 else []


def generate_answers(
    model, tokenizer, adapter, prompts: Sequence[str], neurons, settings: InterventionSettings, max_new_tokens: int
) -> list[str]:
    """Greedy, batched answers (first line of the continuation) with ``neurons`` scaled."""
    stop_ids = [tokenizer.eos_token_id, *newline_token_ids(tokenizer)]
    answers = []
    device = next(model.parameters()).device
    for _, chunk in batches(list(prompts), settings.batch_size):
        batch = tokenize(tokenizer, chunk, settings.max_tokens).to(device)
        with torch.no_grad(), scaled_neurons(adapter, neurons, settings.factor, settings.positions):
            generated = model.generate(
                input_ids=batch.input_ids,
                attention_mask=batch.attention_mask,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                eos_token_id=stop_ids,
                pad_token_id=tokenizer.pad_token_id,
            )
        continuations = tokenizer.batch_decode(generated[:, batch.input_ids.shape[1] :], skip_special_tokens=True)
        answers.extend(text.strip().split("\n")[0].strip() for text in continuations)
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
    rows = []
    for condition in tqdm(condition_names(conditions), desc="QA conditions", unit="condition"):
        neurons = condition_neurons(conditions, condition)
        predictions = generate_answers(model, tokenizer, adapter, prompts, neurons, settings, max_new_tokens)
        for record, prediction in zip(records, predictions, strict=True):
            rows.append(
                {
                    "condition": condition,
                    "example_id": str(record.get("example_id", "")),
                    "prediction": prediction,
                    "f1": best_f1(prediction, record["answers"][lang], lang),
                }
            )
    return pl.DataFrame(rows).join(condition_info(conditions), on="condition", how="left")


def last_token_attention(model, tokenizer, sentences: Sequence[str], max_tokens: int) -> np.ndarray:
    """Attention of the last token over key positions: [layer, batch, head, pos] (left-padded)."""
    batch = tokenize(tokenizer, sentences, max_tokens).to(next(model.parameters()).device)
    with torch.no_grad():
        output = model(**batch.model_inputs(model), output_attentions=True)
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

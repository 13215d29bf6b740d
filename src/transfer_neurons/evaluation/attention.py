"""The attention analysis: how the last token's attention per layer and head shifts under deactivation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
import torch

from transfer_neurons.data.dumps import kept_pairs
from transfer_neurons.data.tidy import labelled
from transfer_neurons.evaluation.conditions import (
    InterventionSettings,
    condition_info,
    condition_runs,
)
from transfer_neurons.model.batching import (
    TokenizedBatch,
    copies_per_pass,
    copy_rows,
    decoder_forward,
    pass_groups,
    stacked_rows,
    tokenize,
)
from transfer_neurons.model.hooks import HookSession, NeuronEdit
from transfer_neurons.model.loading import LoadedModel, load_model
from transfer_neurons.names import NEURON_TYPES, NORMAL, ConditionKind, condition_name

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


def _clip(distribution: np.ndarray) -> np.ndarray:
    return np.clip(distribution, 1e-12, None)


def jensen_shannon(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """JS divergence (nats) between distributions along the last axis."""
    middle = (p + q) / 2
    kl_pm = (p * (np.log(_clip(p)) - np.log(_clip(middle)))).sum(-1)
    kl_qm = (q * (np.log(_clip(q)) - np.log(_clip(middle)))).sum(-1)
    return (kl_pm + kl_qm) / 2


def entropy(p: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) along the last axis."""
    return -(p * np.log(_clip(p))).sum(-1)


def last_token_attention(loaded: LoadedModel, batch: TokenizedBatch) -> np.ndarray:
    """Attention of the last token over key positions: [layer, batch, head, pos] (left-padded)."""
    with torch.no_grad():
        output = decoder_forward(loaded.model, batch, output_attentions=True)
    if output.attentions is None or output.attentions[0] is None:
        raise RuntimeError("the model returned no attention weights; load it with attn_implementation='eager'")
    return torch.stack([layer[:, :, -1, :] for layer in output.attentions]).float().cpu().numpy()


def attention_by_run(
    loaded: LoadedModel, sentences: Sequence[str], runs: Mapping[str, NeuronEdit], max_batch_tokens: int | None
) -> dict[str, np.ndarray]:
    """The last token's attention [layer, sentence, head, pos] of one left-padded batch of ``sentences``
    under every run (a condition's ``NeuronEdit``); the runs as rows of shared passes, as many as
    ``max_batch_tokens`` allows."""
    batch = tokenize(loaded.tokenizer, sentences).to(loaded.device)
    names = list(runs)
    n_rows, width = batch.input_ids.shape
    per_pass = copies_per_pass(n_rows, width, len(names), max_batch_tokens)
    patterns = {}
    for group in pass_groups(names, per_pass):
        with HookSession(loaded.adapter) as session:
            session.edit_neurons([runs[name] for name in group])
            stacked = last_token_attention(loaded, stacked_rows(batch, len(group)))
        for index, name in enumerate(group):
            patterns[name] = copy_rows(stacked, index, len(group), dim=1)
    return patterns


def evaluate_attention(
    loaded: LoadedModel, sentences: Sequence[str], conditions: pl.DataFrame, settings: InterventionSettings
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Per condition, layer and head: mean JS divergence from the normal pattern and mean entropy.

    Also returns each sentence's JS divergence averaged over layers and heads (to pair conditions
    by sentence), and the head-averaged attention of the first sentence per condition (the example).
    """
    patterns = attention_by_run(loaded, sentences, condition_runs(conditions, settings), settings.max_batch_tokens)
    normal = patterns[NORMAL]
    rows, sentence_frames = [], []
    for condition, pattern in patterns.items():
        per_sentence = jensen_shannon(pattern, normal)  # [layer, sentence, head]
        sentence_frames.append(
            pl.DataFrame(
                {
                    "condition": condition,
                    "sentence": np.arange(per_sentence.shape[1]),
                    "js_divergence": per_sentence.mean(axis=(0, 2)),
                }
            )  # fmt: skip
        )
        divergence = per_sentence.mean(axis=1)  # [layer, head]
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
    example = _example_attention(loaded.tokenizer, sentences[0], patterns)
    info = condition_info(conditions)
    shifts = pl.DataFrame(rows).join(info, on="condition", how="left")
    return shifts, pl.concat(sentence_frames).join(info, on="condition", how="left"), example


def _example_attention(
    tokenizer: PreTrainedTokenizerBase, sentence: str, patterns: dict[str, np.ndarray]
) -> pl.DataFrame:
    ids = tokenize(tokenizer, [sentence]).input_ids[0].tolist()
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


def run_attention(
    manifest: Path, test_pairs: Path, conditions: Path, settings: InterventionSettings, *, n_sentences: int,
    seed: int, device: str, labels: dict,
    dtype: str = "auto",
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:  # fmt: skip
    """Attention shift for normal, Type-1, Type-2 and the first random seed of each type."""
    loaded = load_model(manifest, device, attn_implementation="eager", dtype=dtype)
    target_sentences = kept_pairs(test_pairs)["target_text"].to_list()[:n_sentences]
    table = pl.read_parquet(conditions).filter(pl.col("condition").is_in(attention_conditions(seed)))
    shifts, per_sentence, example = evaluate_attention(loaded, target_sentences, table, settings)
    return labelled(shifts, **labels), labelled(per_sentence, **labels), labelled(example, **labels)


def attention_conditions(seed: int) -> list[str]:
    """Normal, each type's transfer neurons, and each type's random and magnitude-matched set of one seed."""
    drawn = [
        condition_name(kind, neuron_type, seed)
        for kind in (ConditionKind.RANDOM, ConditionKind.MAGNITUDE_MATCHED)
        for neuron_type in NEURON_TYPES
    ]
    return [NORMAL, *NEURON_TYPES, *drawn]

"""The loss analysis: is the damage a condition does selective for a language?

Per condition, the next-token loss (mean negative log-likelihood per predicted token) of held-out
sentences of each language, English included, with the condition's neurons scaled at every
position. Transfer neurons that move a language's states into the shared space should raise that
language's loss more than English's; a set that raises every language's loss alike damages the
model rather than transferring between languages.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import polars as pl
import torch
from tqdm import tqdm

from transfer_neurons.data.dumps import kept_pairs
from transfer_neurons.data.tidy import labelled
from transfer_neurons.evaluation.conditions import (
    InterventionSettings,
    condition_info,
    condition_names,
    condition_neurons,
    select_conditions,
)
from transfer_neurons.model.batching import length_sorted_batches, token_lengths, tokenize
from transfer_neurons.model.hooks import scaled_neurons
from transfer_neurons.model.loading import LoadedModel, load_model


def predicted_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """[B, T] bool: positions whose next token is a real token (a causal LM's own loss counts these)."""
    mask = attention_mask.bool()
    predicting = torch.zeros_like(mask)
    predicting[:, :-1] = mask[:, :-1] & mask[:, 1:]
    return predicting


def token_losses(logits: torch.Tensor, input_ids: torch.Tensor, predicting: torch.Tensor) -> torch.Tensor:
    """Per sentence, the mean NLL of each real token given the ones before it.

    ``logits`` [P, V] holds the predicting positions only (``predicting`` [B, T], row-major order);
    input_ids [B, T] (left-padded) -> [B]. NLL = logsumexp over the vocabulary - the target's logit,
    which needs no [P, V] log-softmax in memory.
    """
    rows, positions = predicting.nonzero(as_tuple=True)
    targets = input_ids[rows, positions + 1]
    logits = logits.float()
    nll = torch.logsumexp(logits, dim=-1) - logits.gather(-1, targets[:, None])[:, 0]
    totals = torch.zeros(input_ids.shape[0], dtype=nll.dtype).index_add_(0, rows.cpu(), nll.cpu())
    counts = predicting.sum(dim=1).cpu().clamp_min(1)
    return totals / counts


def sentence_losses(loaded: LoadedModel, sentences: Sequence[str], neurons, settings: InterventionSettings):
    """Mean next-token NLL of each sentence [N] with ``neurons`` scaled at ``settings.positions``.

    Only the positions that predict a real token are projected onto the vocabulary.
    """
    lengths = token_lengths(loaded.tokenizer, sentences)
    losses = np.empty(len(sentences))
    for rows in length_sorted_batches(lengths, settings.batch_size, settings.max_batch_tokens):
        batch = tokenize(loaded.tokenizer, [sentences[row] for row in rows]).to(loaded.device)
        predicting = predicted_positions(batch.attention_mask)
        with torch.no_grad(), scaled_neurons(loaded.adapter, neurons, settings.factor, settings.positions):
            logits = loaded.model(**batch.model_inputs(loaded.model), logits_to_keep=predicting).logits
        losses[rows] = token_losses(logits, batch.input_ids, predicting).numpy()
    return losses


def evaluate_loss(
    loaded: LoadedModel,
    sentences_by_language: Mapping[str, Sequence[str]],
    conditions: pl.DataFrame,
    settings: InterventionSettings,
) -> pl.DataFrame:
    """One row per condition, language and sentence: the sentence's mean next-token NLL."""
    frames = []
    names = condition_names(conditions)
    with tqdm(total=len(names) * len(sentences_by_language), desc="loss", unit="condition x language") as progress:
        for condition in names:
            neurons = condition_neurons(conditions, condition)
            for lang, sentences in sentences_by_language.items():
                losses = sentence_losses(loaded, sentences, neurons, settings)
                frames.append(pl.DataFrame({"condition": condition, "text_language": lang,
                                            "sentence": np.arange(len(sentences), dtype=np.int32),
                                            "loss": losses}))  # fmt: skip
                progress.update(1)
    return pl.concat(frames).join(condition_info(conditions), on="condition", how="left")


def held_out_sentences(
    test_pairs: Mapping[str, Path], pivot: str, n_sentences: int, own: str | None = None
) -> dict[str, list[str]]:
    """The first ``n_sentences`` test pairs' sentences: English (the pivot) and every language's, or
    only the language ``own``'s. English comes from the same pairs as the first language's text."""
    by_language = {}
    for lang, path in test_pairs.items():
        if own is not None and lang != own:
            continue
        pairs = kept_pairs(path).head(n_sentences)
        if not by_language:
            by_language[pivot] = pairs["pivot_text"].to_list()
        by_language[lang] = pairs["target_text"].to_list()
    return by_language


def run_loss_evaluation(
    manifest: Path, conditions: Path, test_pairs: Mapping[str, Path], settings: InterventionSettings, *,
    kinds, main_label: str, seeds, pivot: str, n_sentences: int, every_language: bool, device: str, labels: dict,
) -> pl.DataFrame:  # fmt: skip
    """The ``evaluate_loss`` rule: one language's conditions, on held-out English text and the language's
    own (``every_language``: every configured language's)."""
    loaded = load_model(manifest, device)
    table = select_conditions(pl.read_parquet(conditions), kinds, main_label, seeds=seeds)
    own = None if every_language else labels["language"]
    results = evaluate_loss(loaded, held_out_sentences(test_pairs, pivot, n_sentences, own), table, settings)
    return labelled(results, **labels)

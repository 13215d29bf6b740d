"""The loss analysis: is the damage a condition does selective for a language?

Per condition, the next-token loss (mean negative log-likelihood per predicted token) of held-out
sentences of each language, English included, with the condition's neurons scaled at every
position. Transfer neurons that move a language's states into the shared space should raise that
language's loss more than English's; a set that raises every language's loss alike damages the
model rather than transferring between languages.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
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
    condition_runs,
    select_conditions,
)
from transfer_neurons.model.batching import (
    copies_per_pass,
    copy_rows,
    length_sorted_batches,
    pass_groups,
    stacked_rows,
    token_lengths,
    tokenize,
)
from transfer_neurons.model.hooks import HookSession, NeuronEdit
from transfer_neurons.model.loading import LoadedModel, load_model


def predicted_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """[B, T] bool: positions whose next token is a real token (a causal LM's own loss counts these)."""
    mask = attention_mask.bool()
    predicting = torch.zeros_like(mask)
    predicting[:, :-1] = mask[:, :-1] & mask[:, 1:]
    return predicting


def target_log_probabilities(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log p of ``targets`` [...] under ``logits`` [..., V]: the target's logit minus the logsumexp over the
    vocabulary, which needs no [..., V] log-softmax in memory."""
    logits = logits.float()
    return logits.gather(-1, targets[..., None])[..., 0] - torch.logsumexp(logits, dim=-1)


def token_log_likelihoods(logits: torch.Tensor, input_ids: torch.Tensor, predicting: torch.Tensor) -> torch.Tensor:
    """Per row, the summed log-likelihood of each token that a ``predicting`` position predicts.

    ``logits`` [P, V] holds the predicting positions only (``predicting`` [B, T], row-major order);
    input_ids [B, T] -> [B].
    """
    rows, positions = predicting.nonzero(as_tuple=True)
    log_likelihood = target_log_probabilities(logits, input_ids[rows, positions + 1])
    return torch.zeros(input_ids.shape[0], dtype=log_likelihood.dtype).index_add_(0, rows.cpu(), log_likelihood.cpu())


def token_losses(logits: torch.Tensor, input_ids: torch.Tensor, predicting: torch.Tensor) -> torch.Tensor:
    """Per sentence, the mean NLL of each real token given the ones before it (left-padded rows) -> [B]."""
    counts = predicting.sum(dim=1).cpu().clamp_min(1)
    return -token_log_likelihoods(logits, input_ids, predicting) / counts


# The logits of one pass are at most this large (float32): a 262k-word vocabulary takes 1 MiB a position.
LOGIT_BUDGET_BYTES = 512 * 2**20


def losses_by_run(
    loaded: LoadedModel, sentences: Sequence[str], runs: Mapping[str, NeuronEdit], *, batch_size: int,
    max_batch_tokens: int | None,
) -> dict[str, np.ndarray]:  # fmt: skip
    """Mean next-token NLL of each sentence [N] under every run (a condition's ``NeuronEdit``); the runs
    as rows of shared passes (``model.hooks``).

    Only the positions that predict a real token are projected onto the vocabulary, and a pass takes
    as many runs' copies of a batch as ``max_batch_tokens`` tokens and ``LOGIT_BUDGET_BYTES`` of logits
    allow.
    """
    names = list(runs)
    vocabulary = loaded.model.get_output_embeddings().weight.shape[0]
    lengths = token_lengths(loaded.tokenizer, sentences)
    losses = {name: np.empty(len(sentences)) for name in names}
    for rows in length_sorted_batches(lengths, batch_size, max_batch_tokens):
        batch = tokenize(loaded.tokenizer, [sentences[row] for row in rows]).to(loaded.device)
        predicting = predicted_positions(batch.attention_mask)
        by_logits = LOGIT_BUDGET_BYTES // max(int(predicting.sum()) * vocabulary * 4, 1)
        n_rows, width = batch.input_ids.shape
        per_pass = min(copies_per_pass(n_rows, width, len(names), max_batch_tokens), by_logits)
        for group in pass_groups(names, max(per_pass, 1)):
            copies = len(group)
            stacked = stacked_rows(batch, copies)
            stacked_predicting = predicting.repeat_interleave(copies, dim=0)
            with torch.no_grad(), HookSession(loaded.adapter) as session:
                session.edit_neurons([runs[name] for name in group])
                logits = loaded.model(**stacked.model_inputs(loaded.model), logits_to_keep=stacked_predicting).logits
            stacked_losses = token_losses(logits, stacked.input_ids, stacked_predicting)
            for index, name in enumerate(group):
                losses[name][rows] = copy_rows(stacked_losses, index, copies).numpy()
    return losses


def evaluate_loss(
    loaded: LoadedModel,
    sentences_by_language: Mapping[str, Sequence[str]],
    conditions: pl.DataFrame,
    settings: InterventionSettings,
) -> pl.DataFrame:
    """One row per condition, language and sentence: the sentence's mean next-token NLL."""
    names = condition_names(conditions)
    runs = condition_runs(conditions, settings)
    by_language = {}
    for lang, sentences in tqdm(sentences_by_language.items(), desc="loss", unit="language"):
        by_language[lang] = losses_by_run(loaded, sentences, runs, batch_size=settings.batch_size,
                                          max_batch_tokens=settings.max_batch_tokens)  # fmt: skip
    frames = [
        pl.DataFrame(
            {
                "condition": condition,
                "text_language": lang,
                "sentence": np.arange(len(sentences_by_language[lang]), dtype=np.int32),
                "loss": by_language[lang][condition],
            }
        )  # fmt: skip
        for condition in names
        for lang in sentences_by_language
    ]
    return pl.concat(frames).join(condition_info(conditions), on="condition", how="left")


def held_out_sentences(
    test_pairs: Mapping[str, Path], pivot: str, n_sentences: int, own: str | None = None
) -> dict[str, list[str]]:
    """The first ``n_sentences`` test pairs' sentences: English (the pivot) and every language's, or
    only the language ``own``'s. English comes from the same pairs as the first language's text."""
    by_language: dict[str, list[str]] = {}
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
    kinds: Iterable[str], main_label: str, seeds: Iterable[int] | None, pivot: str, n_sentences: int,
    every_language: bool, device: str, labels: dict, dtype: str = "auto",
) -> pl.DataFrame:  # fmt: skip
    """The ``evaluate_loss`` rule: one language's conditions, on held-out English text and the language's
    own (``every_language``: every configured language's)."""
    loaded = load_model(manifest, device, dtype=dtype)
    table = select_conditions(pl.read_parquet(conditions), kinds, main_label, seeds=seeds)
    own = None if every_language else labels["language"]
    results = evaluate_loss(loaded, held_out_sentences(test_pairs, pivot, n_sentences, own), table, settings)
    return labelled(results, **labels)

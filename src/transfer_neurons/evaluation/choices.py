"""The multiple-choice analysis: the built-in 4-way task scored by log-likelihood under every condition.

Each item (``evaluation.multiple_choice``: a built-in QA question, its gold answer and three wrong
ones, in ``data/lm_eval/tn_mc_{lang}.jsonl``) is scored as lm-evaluation-harness scores its
``multiple_choice`` tasks: the log-likelihood of ``" " + choice`` after ``"Q: {question}\\nA:"``,
with the context and continuation split as its ``_encode_pair`` does; ``acc`` takes the choice of
highest log-likelihood, ``acc_norm`` the highest per character of the choice. A test checks the
numbers against the harness itself. Here the conditions run as rows of shared passes, which the
harness's own request batching cannot do; every edit is at ``positions`` of the context (``prompt``:
its tokens, as the paper's MMLU-ProX runs), the continuation read unedited.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
import torch
from tqdm import tqdm

from transfer_neurons.data.tidy import labelled
from transfer_neurons.evaluation.conditions import (
    InterventionSettings,
    condition_info,
    condition_runs,
    select_conditions,
)
from transfer_neurons.evaluation.loss import LOGIT_BUDGET_BYTES, target_log_probabilities, token_log_likelihoods
from transfer_neurons.evaluation.multiple_choice import CHOICE_DELIMITER, MC_PROMPT
from transfer_neurons.model.batching import (
    TokenizedBatch,
    accepts_position_ids,
    copies_per_pass,
    copy_rows,
    ensure_padding,
    length_sorted_batches,
    pass_groups,
    position_ids_from_mask,
    stacked_rows,
)
from transfer_neurons.model.hooks import HookSession, NeuronEdit
from transfer_neurons.model.loading import LoadedModel, load_model

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


@dataclass(frozen=True)
class EncodedItem:
    """One item's token ids as lm-evaluation-harness feeds them: the context (the question) once, and each
    choice's continuation after it (the model reads context + continuation, minus the last token)."""

    context: list[int]
    continuations: list[list[int]]


def read_items(path: Path, limit: int | None = None) -> list[dict]:
    """The first ``limit`` items of a task file (JSON lines: question, choices, answer)."""
    items = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        item = json.loads(line)
        if not {"question", "choices", "answer"} <= set(item) or not 0 <= item["answer"] < len(item["choices"]):
            raise ValueError(f"{path}: line {number}: an item needs question, choices and an answer index among them")
        items.append(item)
    return items[:limit] if limit else items


def encode_choice(tokenizer: PreTrainedTokenizerBase, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """(context ids, continuation ids) as lm-evaluation-harness splits a request: the context's trailing
    spaces move to the continuation, context + continuation is encoded once, and the continuation is
    what follows the length of the separately encoded context."""
    spaces = len(context) - len(context.rstrip())
    if spaces:
        context, continuation = context[:-spaces], context[-spaces:] + continuation
    whole = tokenizer.encode(context + continuation)
    context_ids = tokenizer.encode(context)
    return context_ids, whole[len(context_ids) :]


def encoded_items(tokenizer: PreTrainedTokenizerBase, items: Sequence[dict]) -> list[EncodedItem]:
    encoded = []
    for item in items:
        context = MC_PROMPT.format(question=item["question"])
        pairs = [encode_choice(tokenizer, context, CHOICE_DELIMITER + choice) for choice in item["choices"]]
        encoded.append(EncodedItem(pairs[0][0], [continuation for _, continuation in pairs]))
    return encoded


def context_batch(tokenizer: PreTrainedTokenizerBase, items: Sequence[EncodedItem]) -> TokenizedBatch:
    """The items' contexts as one left-padded batch: every context ends at the last position."""
    ensure_padding(tokenizer)
    width = max(len(item.context) for item in items)
    input_ids = torch.full((len(items), width), tokenizer.pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(items), width), dtype=torch.long)
    for row, item in enumerate(items):
        input_ids[row, width - len(item.context) :] = torch.tensor(item.context)
        attention_mask[row, width - len(item.context) :] = 1
    return TokenizedBatch(input_ids, attention_mask)


def continuation_batch(
    tokenizer: PreTrainedTokenizerBase, continuations: Sequence[list[int]]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each continuation but its last token, right-padded ([rows, width]: the tokens the model reads after
    the context), and its mask; width 0 when every continuation is one token."""
    width = max(len(ids) for ids in continuations) - 1
    input_ids = torch.full((len(continuations), width), tokenizer.pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(continuations), width), dtype=torch.long)
    for row, ids in enumerate(continuations):
        input_ids[row, : len(ids) - 1] = torch.tensor(ids[:-1], dtype=torch.long)
        attention_mask[row, : len(ids) - 1] = 1
    return input_ids, attention_mask


def log_likelihoods_by_run(
    loaded: LoadedModel, items: Sequence[EncodedItem], runs: Mapping[str, NeuronEdit], *, batch_size: int,
    max_batch_tokens: int | None,
) -> dict[str, np.ndarray]:  # fmt: skip
    """Per run (a condition's ``NeuronEdit``), each (item, choice)'s log-likelihood of its continuation,
    in item and choice order; the runs as rows of shared passes.

    Each pass reads every run's copy of a batch's contexts once (the edits at ``prompt`` positions
    reach the context; a context is the prompt), then every choice's continuation from a copy of its
    context's cache: an item's choices share the question's computation. A pass takes as many runs as
    ``max_batch_tokens`` tokens and ``LOGIT_BUDGET_BYTES`` of logits allow.
    """
    names = list(runs)
    offsets = np.cumsum([0] + [len(item.continuations) for item in items])
    values = {name: np.empty(offsets[-1]) for name in names}
    vocabulary = loaded.model.get_output_embeddings().weight.shape[0]
    batches = length_sorted_batches([len(item.context) for item in items], batch_size, max_batch_tokens)
    for rows in tqdm(batches, desc="choice batches", unit="batch"):
        chosen = [items[row] for row in rows]
        contexts = context_batch(loaded.tokenizer, chosen).to(loaded.device)
        requests = [(index, continuation) for index, item in enumerate(chosen) for continuation in item.continuations]
        read, read_mask = continuation_batch(loaded.tokenizer, [continuation for _, continuation in requests])
        width = contexts.input_ids.shape[1] + read.shape[1]
        # Logits per copy: one position per context, and each read position of a continuation.
        by_logits = LOGIT_BUDGET_BYTES // max((len(chosen) + int(read_mask.sum())) * vocabulary * 4, 1)
        per_pass = max(min(copies_per_pass(len(requests), width, len(names), max_batch_tokens), by_logits), 1)
        for group in pass_groups(names, per_pass):
            sums = group_log_likelihoods(loaded, contexts, requests, (read, read_mask), [runs[name] for name in group])
            slots = np.concatenate([np.arange(offsets[row], offsets[row + 1]) for row in rows])
            for index, name in enumerate(group):
                values[name][slots] = copy_rows(sums, index, len(group)).numpy()
    return values


def group_log_likelihoods(
    loaded: LoadedModel, contexts: TokenizedBatch, requests: Sequence[tuple[int, list[int]]],
    read: tuple[torch.Tensor, torch.Tensor], edits: Sequence[NeuronEdit],
) -> torch.Tensor:  # fmt: skip
    """[requests x K] log-likelihoods (row r * K + k: request r under edit k) of one batch of contexts and
    their requests ``(context row, continuation ids)``, with ``read`` the continuations' read tokens."""
    model, copies = loaded.model, len(edits)
    width = contexts.input_ids.shape[1]
    first_targets = torch.tensor([continuation[0] for _, continuation in requests]).repeat_interleave(copies)
    # Row r * K + k of the continuation pass continues context row (its context) * K + k of the context pass.
    source = torch.tensor([context * copies + copy for context, _ in requests for copy in range(copies)])
    with torch.no_grad(), HookSession(loaded.adapter) as session:
        edited = session.edit_neurons(edits, prompt_length=width)
        stacked = stacked_rows(contexts, copies)
        out = model(**stacked.model_inputs(model), use_cache=True, logits_to_keep=1)
        # The context's last position predicts each continuation's first token.
        last = out.logits[:, -1][source.to(out.logits.device)]
        sums = target_log_probabilities(last, first_targets.to(last.device))
        read_ids, read_mask = read
        if read_ids.shape[1]:
            cache = out.past_key_values
            cache.reorder_cache(source.to(loaded.device))
            edited.restart(prompt_length=width, start=width)
            read_ids = read_ids.repeat_interleave(copies, dim=0).to(loaded.device)
            read_mask = read_mask.repeat_interleave(copies, dim=0).to(loaded.device)
            mask = torch.cat([stacked.attention_mask[source.to(loaded.device)], read_mask], dim=1)
            inputs = {"input_ids": read_ids, "attention_mask": mask, "cache": cache, "use_cache": True}
            if accepts_position_ids(model):
                inputs["position_ids"] = position_ids_from_mask(mask)[:, width:]
            # Only the read positions' logits (position j predicts continuation token j + 1).
            logits = model(**inputs, logits_to_keep=read_mask.bool()).logits
            following = torch.tensor([continuation + [0] * (read_ids.shape[1] + 1 - len(continuation))
                                      for _, continuation in requests]).repeat_interleave(copies, dim=0)  # fmt: skip
            sums = sums.cpu() + token_log_likelihoods(logits, following.to(logits.device), read_mask.bool())
    return sums.cpu()


def item_scores(items: Sequence[dict], log_likelihoods: np.ndarray) -> pl.DataFrame:
    """Per item: the chosen choice by log-likelihood and per character, and whether each is the answer.
    ``log_likelihoods`` is in item and choice order."""
    rows = []
    offsets = np.cumsum([0] + [len(item["choices"]) for item in items])
    for item_index, item in enumerate(items):
        values = log_likelihoods[offsets[item_index] : offsets[item_index + 1]]
        lengths = np.array([float(len(choice)) for choice in item["choices"]])
        chosen, chosen_norm = int(np.argmax(values)), int(np.argmax(values / lengths))
        answer = item["answer"]
        rows.append({"item": str(item.get("id", item_index)), "chosen": chosen, "chosen_norm": chosen_norm,
                     "acc": float(chosen == answer), "acc_norm": float(chosen_norm == answer)})  # fmt: skip
    return pl.DataFrame(rows)


def accuracy_by_run(
    loaded: LoadedModel, items: Sequence[dict], runs: Mapping[str, NeuronEdit], *, batch_size: int,
    max_batch_tokens: int | None,
) -> dict[str, pl.DataFrame]:  # fmt: skip
    """Per run, ``item_scores`` of every item (item, chosen answers, acc, acc_norm)."""
    encoded = encoded_items(loaded.tokenizer, items)
    by_run = log_likelihoods_by_run(loaded, encoded, runs, batch_size=batch_size, max_batch_tokens=max_batch_tokens)
    return {name: item_scores(items, values) for name, values in by_run.items()}


def evaluate_choices(
    loaded: LoadedModel, items_by_language: Mapping[str, Sequence[dict]], runs: Mapping[str, NeuronEdit], *,
    batch_size: int, max_batch_tokens: int | None,
) -> pl.DataFrame:  # fmt: skip
    """One row per run (``condition``), task language and item: the chosen answers and acc, acc_norm (0/1)."""
    frames = []
    for task_language, items in items_by_language.items():
        scores = accuracy_by_run(loaded, items, runs, batch_size=batch_size, max_batch_tokens=max_batch_tokens)
        for name in runs:
            frames.append(
                scores[name].with_columns(pl.lit(name).alias("condition"), pl.lit(task_language).alias("task_language"))
            )
    return pl.concat(frames).select("condition", "task_language", pl.exclude("condition", "task_language"))


def run_choices(
    manifest: Path, conditions: Path, task_files: Mapping[str, Path], settings: InterventionSettings, *,
    kinds: Iterable[str], seeds: Iterable[int] | None, main_label: str, limit: int | None, device: str, labels: dict,
    dtype: str = "auto",
) -> pl.DataFrame:  # fmt: skip
    """The ``evaluate_choices`` rule: one language's conditions on the task of each language in
    ``task_files`` (the language's own and English)."""
    loaded = load_model(manifest, device, dtype=dtype)
    table = select_conditions(pl.read_parquet(conditions), kinds, main_label, seeds=seeds)
    items = {lang: read_items(path, limit) for lang, path in task_files.items()}
    scores = evaluate_choices(loaded, items, condition_runs(table, settings), batch_size=settings.batch_size,
                              max_batch_tokens=settings.max_batch_tokens)  # fmt: skip
    return labelled(scores.join(condition_info(table), on="condition", how="left"), **labels)

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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

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
from transfer_neurons.evaluation.loss import token_log_likelihoods
from transfer_neurons.evaluation.multiple_choice import CHOICE_DELIMITER, MC_PROMPT
from transfer_neurons.model.batching import (
    TokenizedBatch,
    copies_per_pass,
    copy_rows,
    ensure_padding,
    length_sorted_batches,
    pass_groups,
    stacked_rows,
)
from transfer_neurons.model.hooks import HookSession, NeuronEdit
from transfer_neurons.model.loading import LoadedModel, load_model


@dataclass(frozen=True)
class EncodedChoice:
    """One (item, choice) request: the token ids of context and continuation, and how many are context."""

    item: int
    choice: int
    ids: list[int]
    context_tokens: int


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


def encode_choice(tokenizer, context: str, continuation: str) -> tuple[list[int], int]:
    """(ids of context + continuation, number of context tokens), split as lm-evaluation-harness does:
    the context's trailing spaces move to the continuation, the whole is encoded once, and the
    continuation is what follows the separately encoded context."""
    spaces = len(context) - len(context.rstrip())
    if spaces:
        context, continuation = context[:-spaces], context[-spaces:] + continuation
    whole = tokenizer.encode(context + continuation)
    return whole, len(tokenizer.encode(context))


def encoded_choices(tokenizer, items: Sequence[dict]) -> list[EncodedChoice]:
    requests = []
    for item_index, item in enumerate(items):
        context = MC_PROMPT.format(question=item["question"])
        for choice_index, choice in enumerate(item["choices"]):
            ids, context_tokens = encode_choice(tokenizer, context, CHOICE_DELIMITER + choice)
            requests.append(EncodedChoice(item_index, choice_index, ids, context_tokens))
    return requests


def left_padded(tokenizer, requests: Sequence[EncodedChoice]) -> tuple[TokenizedBatch, torch.Tensor, torch.Tensor]:
    """The requests as one left-padded batch, each row's prompt length (its last context position + 1,
    in padded coordinates) and the positions that predict a continuation token [rows, width]."""
    ensure_padding(tokenizer)
    width = max(len(request.ids) for request in requests)
    input_ids = torch.full((len(requests), width), tokenizer.pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(requests), width), dtype=torch.long)
    predicting = torch.zeros((len(requests), width), dtype=torch.bool)
    prompt_lengths = torch.empty(len(requests), dtype=torch.long)
    for row, request in enumerate(requests):
        start = width - len(request.ids)
        input_ids[row, start:] = torch.tensor(request.ids)
        attention_mask[row, start:] = 1
        prompt_lengths[row] = start + request.context_tokens
        predicting[row, start + request.context_tokens - 1 : width - 1] = True
    return TokenizedBatch(input_ids, attention_mask), prompt_lengths, predicting


def log_likelihoods_by_run(
    loaded: LoadedModel, requests: Sequence[EncodedChoice], runs: Mapping[str, NeuronEdit], *, batch_size: int,
    max_batch_tokens: int | None,
) -> dict[str, np.ndarray]:  # fmt: skip
    """Per run (a condition's ``NeuronEdit``), each request's log-likelihood of its continuation
    [n_requests]; the runs as rows of shared passes, as many as ``max_batch_tokens`` allows."""
    names = list(runs)
    values = {name: np.empty(len(requests)) for name in names}
    batches = length_sorted_batches([len(request.ids) for request in requests], batch_size, max_batch_tokens)
    for rows in tqdm(batches, desc="choice batches", unit="batch"):
        batch, prompt_lengths, predicting = left_padded(loaded.tokenizer, [requests[row] for row in rows])
        batch = batch.to(loaded.device)
        per_pass = copies_per_pass(*batch.input_ids.shape, len(names), max_batch_tokens)
        for group in pass_groups(names, per_pass):
            copies = len(group)
            stacked = stacked_rows(batch, copies)
            stacked_predicting = predicting.repeat_interleave(copies, dim=0).to(loaded.device)
            with torch.no_grad(), HookSession(loaded.adapter) as session:
                session.edit_neurons([runs[name] for name in group], prompt_length=prompt_lengths)
                logits = loaded.model(**stacked.model_inputs(loaded.model), logits_to_keep=stacked_predicting).logits
            sums = token_log_likelihoods(logits, stacked.input_ids, stacked_predicting)
            for index, name in enumerate(group):
                values[name][rows] = copy_rows(sums, index, copies).numpy()
    return values


def item_scores(items: Sequence[dict], requests: Sequence[EncodedChoice], log_likelihoods: np.ndarray) -> pl.DataFrame:
    """Per item: the chosen choice by log-likelihood and per character, and whether each is the answer."""
    rows = []
    for item_index, item in enumerate(items):
        ours = [index for index, request in enumerate(requests) if request.item == item_index]
        values = log_likelihoods[ours]
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
    requests = encoded_choices(loaded.tokenizer, items)
    by_run = log_likelihoods_by_run(loaded, requests, runs, batch_size=batch_size, max_batch_tokens=max_batch_tokens)
    return {name: item_scores(items, requests, values) for name, values in by_run.items()}


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
    manifest: Path, conditions: Path, task_files: Mapping[str, Path], settings: InterventionSettings, *, kinds,
    seeds, main_label: str, limit: int | None, device: str, labels: dict, dtype: str = "auto",
) -> pl.DataFrame:  # fmt: skip
    """The ``evaluate_choices`` rule: one language's conditions on the task of each language in
    ``task_files`` (the language's own and English)."""
    loaded = load_model(manifest, device, dtype=dtype)
    table = select_conditions(pl.read_parquet(conditions), kinds, main_label, seeds=seeds)
    items = {lang: read_items(path, limit) for lang, path in task_files.items()}
    scores = evaluate_choices(loaded, items, condition_runs(table, settings), batch_size=settings.batch_size,
                              max_batch_tokens=settings.max_batch_tokens)  # fmt: skip
    return labelled(scores.join(condition_info(table), on="condition", how="left"), **labels)

"""The QA analysis: greedy answers in the L2 under every intervention condition, scored against the gold answers."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import polars as pl
import torch
from tqdm import tqdm

from transfer_neurons.data.languages import language
from transfer_neurons.data.qa import answers_of, gold_texts, load_qa, question_of
from transfer_neurons.data.tidy import labelled
from transfer_neurons.evaluation.conditions import (
    InterventionSettings,
    condition_info,
    condition_names,
    condition_neurons,
    select_conditions,
)
from transfer_neurons.evaluation.mkqa_scoring import best_em_f1
from transfer_neurons.model.batching import batches, prefix_cache, tokenize
from transfer_neurons.model.hooks import scaled_neurons, touches_only_last_token
from transfer_neurons.model.loading import LoadedModel, load_model


@dataclass(frozen=True)
class QASettings:
    """What is asked and how answers are generated (the ``evaluation.qa`` config section)."""

    template: str  # the prompt, with ``{question}``
    max_new_tokens: int
    kinds: tuple[str, ...]  # the condition kinds to run
    include_sweep: bool  # also every N of the sweep, not only the main N
    positions: tuple[str, ...] = ("prompt", "prompt_last")  # the paper's two settings, each run in full
    limit: int | None = None  # the first ``limit`` scorable questions only
    seeds: tuple[int, ...] | None = None  # the drawn baselines' seeds to run (None: every one)


def newline_token_ids(tokenizer) -> list[int]:
    """Token ids that are exactly a line break, used to stop answers at the end of a line."""
    ids = tokenizer.encode("\n", add_special_tokens=False)
    return ids if len(ids) == 1 else []


def first_lines(tokenizer, generated: torch.Tensor, prompt_length: int) -> list[str]:
    continuations = tokenizer.batch_decode(generated[:, prompt_length:], skip_special_tokens=True)
    return [text.strip().split("\n")[0].strip() for text in continuations]


def answers_by_condition(
    loaded: LoadedModel,
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
    share_prefix = touches_only_last_token(settings.positions) if share_prefix is None else share_prefix
    model, tokenizer = loaded.model, loaded.tokenizer
    stop_ids = [tokenizer.eos_token_id, *newline_token_ids(tokenizer)]
    answers: dict[str, list[str]] = {name: [] for name in neuron_sets}
    n_batches = -(-len(prompts) // settings.batch_size)
    with tqdm(total=n_batches * len(neuron_sets), desc="QA batches x conditions", unit="generation") as progress:
        for _, chunk in batches(list(prompts), settings.batch_size):
            batch = tokenize(tokenizer, chunk).to(loaded.device)
            # A one-token prompt has no prefix to share.
            with torch.no_grad():
                prefix = prefix_cache(model, batch) if share_prefix and batch.input_ids.shape[1] > 1 else None
            for name, neurons in neuron_sets.items():
                cache = copy.deepcopy(prefix) if prefix is not None else None
                with torch.no_grad(), scaled_neurons(loaded.adapter, neurons, settings.factor, settings.positions):
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
    loaded: LoadedModel,
    records: list[dict],
    lang: str,
    conditions: pl.DataFrame,
    settings: InterventionSettings,
    *,
    template: str,
    max_new_tokens: int,
) -> pl.DataFrame:
    """One row per (condition, question): the prediction and its MKQA EM and F1, for ``settings.positions``."""
    prompts = [template.format(question=question_of(record, lang)) for record in records]
    neuron_sets = {condition: condition_neurons(conditions, condition) for condition in condition_names(conditions)}
    answers = answers_by_condition(loaded, prompts, neuron_sets, settings, max_new_tokens)
    mkqa_key = language(lang).mkqa_key  # MKQA's rules for the language (zh_cn: characters)
    golds = [gold_texts(answers_of(record, lang)) for record in records]
    rows = []
    for condition, predictions in answers.items():
        for record, gold, prediction in zip(records, golds, predictions, strict=True):
            em, f1 = best_em_f1(prediction, gold, mkqa_key)
            rows.append({"condition": condition, "positions": settings.positions,
                         "example_id": str(record.get("example_id", "")), "prediction": prediction, "em": em,
                         "f1": f1})  # fmt: skip
    return pl.DataFrame(rows).join(condition_info(conditions), on="condition", how="left")


def run_qa_evaluation(
    manifest: Path, qa_source: dict, lang: str, conditions: Path, settings: InterventionSettings, qa: QASettings, *,
    main_label: str, device: str, labels: dict,
) -> pl.DataFrame:  # fmt: skip
    """QA answers, MKQA EM and F1 under the conditions ``qa`` selects, in each of its position modes
    (the ``evaluate_qa`` rule)."""
    loaded = load_model(manifest, device)
    records = load_qa(qa_source, [lang], qa.limit)
    table = select_conditions(
        pl.read_parquet(conditions), qa.kinds, main_label, include_sweep=qa.include_sweep, seeds=qa.seeds
    )
    results = [
        evaluate_qa(
            loaded,
            records,
            lang,
            table,
            replace(settings, positions=positions),
            template=qa.template,
            max_new_tokens=qa.max_new_tokens,
        )  # fmt: skip
        for positions in qa.positions
    ]
    return labelled(pl.concat(results), **labels)

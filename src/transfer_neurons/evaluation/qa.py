"""The QA analysis: greedy answers in the L2 under every intervention condition, scored against the gold answers.

The protocol follows the authors' QA script by default (``evaluation.qa``): a prompt per language
(``{question}? 答え: ``), greedy decoding of exactly ``max_new_tokens`` tokens (or to the end of
the sequence) scored whole (``stop: none``), and both of their deactivation settings (``prompt``:
every prompt token; ``prompt_last``: the last one). ``stop: newline`` stops at a line break and
scores the first line instead.

Every condition in every position mode is one *run*; runs share passes as rows of a stacked batch
(``model.hooks.HookSession.edit_neurons``). Runs that touch only the last prompt token continue
from one copy of the batch's unedited prompt prefix; the normal run is computed once and reported
under each position mode.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

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
from transfer_neurons.evaluation.language_id import IDENTIFIABLE, LanguageIdentifier, answer_language_class
from transfer_neurons.evaluation.mkqa_scoring import best_em_f1
from transfer_neurons.model.batching import (
    TokenizedBatch,
    copies_per_pass,
    copy_rows,
    length_sorted_batches,
    pass_groups,
    prefix_cache,
    stacked_rows,
    token_lengths,
    tokenize,
)
from transfer_neurons.model.hooks import HookSession, NeuronEdit, touches_only_last_token
from transfer_neurons.model.loading import LoadedModel, load_model
from transfer_neurons.names import NORMAL

if TYPE_CHECKING:
    from transformers import Cache, PreTrainedTokenizerBase

STOP_MODES = ("none", "newline")


@dataclass(frozen=True)
class QASettings:
    """What is asked and how answers are generated (the ``evaluation.qa`` config section)."""

    template: str | Mapping[str, str]  # the prompt with ``{question}``: one for every language, or one per language
    max_new_tokens: int
    kinds: tuple[str, ...]  # the condition kinds to run
    include_sweep: bool  # also every N of the sweep, not only the main N
    positions: tuple[str, ...] = ("prompt", "prompt_last")  # the paper's two settings, each run in full
    limit: int | None = None  # the first ``limit`` questions the filter keeps
    seeds: tuple[int, ...] | None = None  # the drawn baselines' seeds to run (None: every one)
    stop: str = "none"  # none: every generated token is scored (the paper); newline: the first line
    question_filter: str = "paper"  # data.qa.QUESTION_FILTERS

    def __post_init__(self) -> None:
        if self.stop not in STOP_MODES:
            raise ValueError(f"evaluation.qa.stop must be one of {STOP_MODES}, got {self.stop!r}")


def prompt_template(template: str | Mapping[str, str], lang: str) -> str:
    """The prompt template of ``lang``: the one template, or the language's entry of a per-language map."""
    if isinstance(template, str):
        return template
    if lang not in template:
        raise ValueError(
            f"evaluation.qa.template has no prompt for language {lang!r} (it has {', '.join(sorted(template))})"
        )
    return template[lang]


def newline_token_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Token ids that are exactly a line break, used to stop answers at the end of a line."""
    ids = tokenizer.encode("\n", add_special_tokens=False)
    return ids if len(ids) == 1 else []


def stop_token_ids(loaded: LoadedModel, stop: str) -> list[int] | None:
    """The ids that end an answer: the model's own end of sequence (``None``: its generation config's,
    as the authors' plain ``generate`` call), plus a line break for ``stop: newline``."""
    if stop == "none":
        return None
    return [loaded.tokenizer.eos_token_id, *newline_token_ids(loaded.tokenizer)]


def answer_texts(tokenizer: PreTrainedTokenizerBase, continuations: list[list[int]], stop: str) -> list[str]:
    """The decoded continuations: whole (``none``, as the authors score them) or their first line."""
    texts = tokenizer.batch_decode(continuations, skip_special_tokens=True)
    if stop == "none":
        return texts
    return [text.strip().split("\n")[0].strip() for text in texts]


def stacked_generation(
    loaded: LoadedModel, batch: TokenizedBatch, edits: Sequence[NeuronEdit], prefix: Cache | None, max_new_tokens: int,
    stop_ids: list[int] | None,
) -> torch.Tensor:  # fmt: skip
    """Greedy continuations of ``len(edits)`` copies of the batch in one ``generate`` call, copy k under
    edit k (``model.batching.stacked_rows`` layout). With ``prefix`` (the cache of every prompt token but
    the last), each copy continues from its own copy of it."""
    copies = len(edits)
    stacked = stacked_rows(batch, copies)
    cache, start = None, 0
    if prefix is not None:
        cache = copy.deepcopy(prefix)
        cache.batch_repeat_interleave(copies)
        start = batch.input_ids.shape[1] - 1
    with torch.no_grad(), HookSession(loaded.adapter) as session:
        session.edit_neurons(edits, prompt_length=batch.input_ids.shape[1], start=start)
        # Causal LMs get ``generate`` from GenerationMixin, which PreTrainedModel does not inherit.
        return loaded.model.generate(  # type: ignore[operator]
            input_ids=stacked.input_ids,
            attention_mask=stacked.attention_mask,
            cache=cache,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=stop_ids,
            pad_token_id=loaded.tokenizer.pad_token_id,
        )


def continuations_by_run(
    loaded: LoadedModel, prompts: Sequence[str], runs: Mapping[str, NeuronEdit], *, max_new_tokens: int,
    stop: str = "none", max_batch_tokens: int | None = None, share_prefix: bool = True,
) -> dict[str, list[list[int]]]:  # fmt: skip
    """The greedy continuation (token ids, padding included) of every prompt under every run, runs
    stacked as rows of shared ``generate`` calls.

    Prompts go in length-sorted batches of at most ``max_batch_tokens`` tokens (prompt and answer);
    each call takes as many runs' copies of a batch as that budget allows. Runs that edit only the
    last prompt token share the batch's prefix (unless ``share_prefix`` is off, for tests).
    """
    tokenizer = loaded.tokenizer
    stop_ids = stop_token_ids(loaded, stop)
    lengths = [length + max_new_tokens for length in token_lengths(tokenizer, prompts)]
    batches = length_sorted_batches(lengths, len(prompts), max_batch_tokens)
    last_only = [name for name, edit in runs.items() if share_prefix and touches_only_last_token(edit.positions)]
    whole = [name for name in runs if name not in last_only]
    continuations: dict[str, list[list[int]]] = {name: [[]] * len(prompts) for name in runs}
    with tqdm(total=len(batches) * len(runs), desc="QA runs x batches", unit="run") as progress:
        for rows in batches:
            batch = tokenize(tokenizer, [prompts[row] for row in rows]).to(loaded.device)
            width = batch.input_ids.shape[1]
            for names, shares_prefix in ((last_only, True), (whole, False)):
                if not names:
                    continue
                with torch.no_grad():
                    prefix = prefix_cache(loaded.model, batch) if shares_prefix and width > 1 else None
                per_pass = copies_per_pass(len(rows), width + max_new_tokens, len(names), max_batch_tokens)
                for group in pass_groups(names, per_pass):
                    generated = stacked_generation(
                        loaded, batch, [runs[name] for name in group], prefix, max_new_tokens, stop_ids
                    )
                    for index, name in enumerate(group):
                        for row, ids in zip(rows, copy_rows(generated, index, len(group))[:, width:], strict=True):
                            continuations[name][row] = ids.tolist()
                    progress.update(len(group))
    return continuations


def answers_by_run(
    loaded: LoadedModel, prompts: Sequence[str], runs: Mapping[str, NeuronEdit], *, max_new_tokens: int,
    stop: str = "none", max_batch_tokens: int | None = None, share_prefix: bool = True,
) -> dict[str, list[str]]:  # fmt: skip
    """The decoded answers of ``continuations_by_run``."""
    continuations = continuations_by_run(loaded, prompts, runs, max_new_tokens=max_new_tokens, stop=stop,
                                         max_batch_tokens=max_batch_tokens, share_prefix=share_prefix)  # fmt: skip
    return {name: answer_texts(loaded.tokenizer, ids, stop) for name, ids in continuations.items()}


def f1_by_run(
    loaded: LoadedModel, records: Sequence[dict], lang: str, runs: Mapping[str, NeuronEdit], *,
    template: str | Mapping[str, str], max_new_tokens: int, stop: str, max_batch_tokens: int | None,
) -> dict[str, list[float]]:  # fmt: skip
    """Per run, each question's MKQA F1 (prompted, decoded and scored as ``evaluate_qa`` does)."""
    prompt = prompt_template(template, lang)
    prompts = [prompt.format(question=question_of(record, lang)) for record in records]
    answers = answers_by_run(loaded, prompts, runs, max_new_tokens=max_new_tokens, stop=stop,
                             max_batch_tokens=max_batch_tokens)  # fmt: skip
    golds = [gold_texts(answers_of(record, lang)) for record in records]
    key = language(lang).mkqa_key
    return {name: [best_em_f1(text, gold, key)[1] for text, gold in zip(texts, golds, strict=True)]
            for name, texts in answers.items()}  # fmt: skip


def qa_runs(
    conditions: pl.DataFrame, positions: Sequence[str], factor: float
) -> tuple[dict[str, NeuronEdit], dict[tuple[str, str], str]]:
    """The runs of every condition in every position mode, the normal condition once.

    Returns the runs by name and, per (condition, position mode), the run that answers it.
    """
    runs: dict[str, NeuronEdit] = {}
    run_of: dict[tuple[str, str], str] = {}
    for mode in positions:
        for condition in condition_names(conditions):
            name = NORMAL if condition == NORMAL else f"{condition}/{mode}"
            if name not in runs:
                runs[name] = NeuronEdit(condition_neurons(conditions, condition), factor, mode)
            run_of[condition, mode] = name
    return runs, run_of


def evaluate_qa(
    loaded: LoadedModel, records: list[dict], lang: str, conditions: pl.DataFrame, settings: InterventionSettings,
    qa: QASettings,
) -> pl.DataFrame:  # fmt: skip
    """One row per (condition, position mode, question): the prediction and its MKQA EM and F1."""
    template = prompt_template(qa.template, lang)
    prompts = [template.format(question=question_of(record, lang)) for record in records]
    runs, run_of = qa_runs(conditions, qa.positions, settings.factor)
    answers = answers_by_run(loaded, prompts, runs, max_new_tokens=qa.max_new_tokens, stop=qa.stop,
                             max_batch_tokens=settings.max_batch_tokens)  # fmt: skip
    mkqa_key = language(lang).mkqa_key  # MKQA's rules for the language (zh_cn: characters)
    golds = [gold_texts(answers_of(record, lang)) for record in records]
    scores = {name: [best_em_f1(text, gold, mkqa_key) for text, gold in zip(texts, golds, strict=True)]
              for name, texts in answers.items()}  # fmt: skip
    identified = answer_languages(answers)
    rows = []
    for (condition, mode), name in run_of.items():
        for record, text, (em, f1), found in zip(records, answers[name], scores[name], identified[name], strict=True):
            rows.append({"condition": condition, "positions": mode, "example_id": str(record.get("example_id", "")),
                         "prediction": text, "em": em, "f1": f1, "answer_language": found,
                         "answer_language_class": answer_language_class(found, lang)})  # fmt: skip
    return pl.DataFrame(rows).join(condition_info(conditions), on="condition", how="left")


def answer_languages(answers: Mapping[str, Sequence[str]]) -> dict[str, list[str | None]]:
    """The language each answer is written in (``None``: too short or nothing tells), among every
    language the identifier knows, so that an answer in a language not run counts as another."""
    identifier = LanguageIdentifier(candidates=list(IDENTIFIABLE))
    return {name: identifier.identify_all(texts) for name, texts in answers.items()}


def run_qa_evaluation(
    manifest: Path, qa_source: dict, lang: str, conditions: Path, settings: InterventionSettings, qa: QASettings, *,
    main_label: str, device: str, labels: dict,
    dtype: str = "auto",
) -> pl.DataFrame:  # fmt: skip
    """QA answers, MKQA EM and F1 under the conditions ``qa`` selects, in each of its position modes
    (the ``evaluate_qa`` rule)."""
    loaded = load_model(manifest, device, dtype=dtype)
    records = load_qa(qa_source, [lang], qa.limit, question_filter=qa.question_filter)
    table = select_conditions(
        pl.read_parquet(conditions), qa.kinds, main_label, include_sweep=qa.include_sweep, seeds=qa.seeds
    )
    results = evaluate_qa(loaded, records, lang, table, settings, qa)
    return labelled(results, **labels)

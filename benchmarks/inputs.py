"""Benchmark inputs: the built-in corpus and QA questions, and the model under test."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from benchmarks.settings import CORPUS_DIR, Settings, configured_qa
from transfer_neurons.data.corpus import load_file_pairs
from transfer_neurons.data.qa import load_qa, question_of
from transfer_neurons.evaluation.qa import prompt_template
from transfer_neurons.model.adapters import FamilyAdapter
from transfer_neurons.model.batching import length_sorted_batches, token_lengths
from transfer_neurons.model.loading import LoadedModel, load_model

PIVOT = "en"
BUILTIN_LANGUAGES = ("ja", "nl", "ko", "it")


@dataclass
class Bench:
    """The model under test and the run's settings, shared by every case."""

    settings: Settings
    manifest: Path
    device_name: str
    loaded: LoadedModel

    @property
    def model(self) -> torch.nn.Module:
        return self.loaded.model

    @property
    def tokenizer(self):
        return self.loaded.tokenizer

    @property
    def adapter(self) -> FamilyAdapter:
        return self.loaded.adapter

    @property
    def device(self) -> torch.device:
        return self.loaded.device


def load_bench(manifest: Path, device: str, settings: Settings) -> Bench:
    return Bench(settings, Path(manifest), device, load_model(manifest, device))


def corpus_pairs(language: str, n_pairs: int, corpus_dir: Path = CORPUS_DIR) -> tuple[list[str], list[str]]:
    """The first ``n_pairs`` (English, L2) sentences of a built-in corpus, as two lists."""
    pivot, target = _all_pairs(language, corpus_dir)
    if len(pivot) < n_pairs:
        raise ValueError(f"the built-in {language} corpus has {len(pivot)} pairs, fewer than {n_pairs}")
    return pivot[:n_pairs], target[:n_pairs]


def sentence_pool(corpus_dir: Path = CORPUS_DIR) -> list[str]:
    """Every distinct built-in sentence, English and the four L2s interleaved so any prefix mixes scripts."""
    columns: list[list[str]] = []
    for language in BUILTIN_LANGUAGES:
        pivot, target = _all_pairs(language, corpus_dir)
        if not columns:
            columns.append(pivot)  # the English side is the same in every built-in file
        columns.append(target)
    interleaved = [text for row in itertools.zip_longest(*columns) for text in row if text is not None]
    return list(dict.fromkeys(interleaved))


def _all_pairs(language: str, corpus_dir: Path) -> tuple[list[str], list[str]]:
    pairs = load_file_pairs(corpus_dir / f"{PIVOT}-{language}.tsv", PIVOT, language)
    return pairs["pivot_text"].to_list(), pairs["target_text"].to_list()


def cycled(pool: list[str], n: int) -> list[str]:
    """The first ``n`` items of ``pool`` repeated as often as needed."""
    return list(itertools.islice(itertools.cycle(pool), n))


def qa_prompts(n: int, qa: dict | None = None) -> list[str]:
    """``n`` QA prompts in the workflow's template, the questions' languages in turn (en, ja, nl, ko, it, en, ...).

    ``qa`` is the workflow's ``evaluation.qa`` section (default: the config's); its source is
    read with the workflow's loader, so only questions it would ask are asked, each in its
    language's prompt (one template for all, or one per language, as ``evaluate_qa`` reads it).
    """
    qa = configured_qa() if qa is None else qa
    languages = [PIVOT, *BUILTIN_LANGUAGES]
    records = load_qa(qa["source"], languages)
    if not records:
        raise ValueError(f"no QA question in {qa['source']} has a short answer in {', '.join(languages)}")
    prompts = []
    for index in range(n):
        lang = languages[index % len(languages)]
        prompts.append(
            prompt_template(qa["template"], lang).format(question=question_of(records[index % len(records)], lang))
        )
    return prompts


def token_counts(
    tokenizer, sentences: list[str], batch_size: int, max_batch_tokens: int | None = None
) -> dict[str, float]:
    """Mean real and mean padded tokens per sentence in the workflow's length-sorted batches."""
    lengths = token_lengths(tokenizer, sentences)
    # Left padding makes every row of a batch as long as its longest sentence.
    padded = sum(
        max(lengths[row] for row in rows) * len(rows)
        for rows in length_sorted_batches(lengths, batch_size, max_batch_tokens)
    )
    return {"real": float(np.mean(lengths)), "padded": padded / len(lengths)}

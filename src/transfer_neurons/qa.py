"""Multilingual QA in MKQA's schema: data loading, MKQA's answer normalisation and F1.

A QA record has ``queries[lang]`` (the question) and ``answers[lang]``, a list of
``{"type", "text", "aliases"}``. F1 is token overlap after MKQA-style normalisation
(lower case, punctuation removed, articles removed for languages that have them,
character tokens for ja/zh/th), maximised over every gold text and alias.
"""

from __future__ import annotations

import json
import re
import string
import unicodedata
from collections import Counter
from pathlib import Path

import numpy as np

from transfer_neurons.languages import language

EXTRA_PUNCTUATION = "「」『』（）、。！？：；・〜《》〈〉【】“”‘’«»…"


class QADataError(ValueError):
    pass


def _strip_punctuation(text: str) -> str:
    return "".join(
        " " if (char in string.punctuation or char in EXTRA_PUNCTUATION or unicodedata.category(char).startswith("P"))
        else char
        for char in text
    )  # fmt: skip


def normalize_answer(text: str, lang: str) -> list[str]:
    """Tokens of ``text`` after MKQA-style normalisation for ``lang``."""
    info = language(lang)
    text = unicodedata.normalize("NFKC", text).lower()
    text = _strip_punctuation(text)
    if info.articles:
        text = re.sub(r"\b(" + "|".join(map(re.escape, info.articles)) + r")\b", " ", text)
    if info.character_tokens:
        return [char for char in text if not char.isspace()]
    return text.split()


def token_f1(prediction: str, gold: str, lang: str) -> float:
    predicted, expected = normalize_answer(prediction, lang), normalize_answer(gold, lang)
    if not predicted or not expected:
        return float(predicted == expected)
    common = sum((Counter(predicted) & Counter(expected)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)


def gold_texts(answers: list[dict]) -> list[str]:
    return [text for answer in answers for text in [answer["text"], *answer.get("aliases", [])] if text]


def best_f1(prediction: str, answers: list[dict], lang: str) -> float:
    """Max F1 over every gold answer and alias."""
    return max((token_f1(prediction, gold, lang) for gold in gold_texts(answers)), default=0.0)


def validate_record(record: dict, location: str, languages: list[str]) -> dict:
    for field in ("queries", "answers"):
        if not isinstance(record.get(field), dict):
            raise QADataError(f"{location}: field {field!r} is missing or not an object")
    for lang in languages:
        question = record["queries"].get(lang)
        if not isinstance(question, str) or not question.strip():
            raise QADataError(f"{location}: queries.{lang}: missing or empty question")
        answers = record["answers"].get(lang)
        if not isinstance(answers, list) or not gold_texts(answers):
            raise QADataError(f"{location}: answers.{lang}: no answer text")
    return record


def load_qa(source: dict, languages: list[str], limit: int | None = None) -> list[dict]:
    """Records from a JSON-lines file (``{"path": ...}``) or a hub dataset (``{"hub": {...}}``)."""
    if "path" in source:
        path = Path(source["path"])
        if not path.is_file():
            raise QADataError(f"{path}: QA file not found")
        records = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise QADataError(f"{path}: line {number}: not valid JSON ({error.msg})") from None
            records.append(validate_record(record, f"{path}: line {number}", languages))
    else:
        from datasets import load_dataset

        hub = dict(source["hub"])
        name = hub.pop("dataset")
        table = load_dataset(name, hub.pop("name", None), split=hub.pop("split", "train"), **hub)
        records = [
            validate_record(dict(record), f"{name}: row {index + 1}", languages) for index, record in enumerate(table)
        ]
    return records[:limit] if limit else records


def bootstrap_mean_ci(values: np.ndarray, n_resamples: int = 1000, seed: int = 0) -> tuple[float, float, float]:
    """Mean and percentile 95 % interval of the mean over resampled questions."""
    values = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(n_resamples, len(values)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(values.mean()), float(low), float(high)

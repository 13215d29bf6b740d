"""Multilingual QA records in MKQA's schema: loading and checking.

A QA record has ``queries[key]`` (the question) and ``answers[key]``, a list of
``{"type", "text", "aliases", ...}``, where ``key`` is the language's MKQA code (``zh_cn`` for
Chinese; ``data.languages``). MKQA also has ``unanswerable`` and ``long_answer`` questions,
which have no short gold answer: like the paper's QA runs, the loader skips them (and logs how
many), so that every question a run asks can be scored. Which questions count as such is a named
question filter (``QUESTION_FILTERS``): ``paper`` judges by the type of the first English answer
only, as the authors' QA script does; ``every_language`` checks every answer in every language
asked.

On the hub (``apple/mkqa``) an answer's ``type`` is a ClassLabel integer; the loader maps it to
its name, so that records from a file and from the hub read the same.
"""

from __future__ import annotations

import gzip
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transfer_neurons.data.languages import language
from transfer_neurons.registry import Registry, UnknownEntryError

log = logging.getLogger(__name__)

# Answer types without a short answer to compare a generated one with.
UNSCORED_TYPES = ("unanswerable", "long_answer")
# The ClassLabel names of MKQA's answer ``type``, in label order (apple/mkqa's loading script and
# dataset card): the authors' ``type in [1, 2]`` is long_answer or unanswerable.
MKQA_ANSWER_TYPES = (
    "entity", "long_answer", "unanswerable", "date", "number", "number_with_unit", "short_phrase", "binary",
)  # fmt: skip
# The language whose first answer the paper's question filter reads.
PAPER_FILTER_LANGUAGE = "en"


class QADataError(ValueError):
    pass


def gold_texts(answers: list[dict]) -> list[str]:
    """The gold strings for one language's MKQA answer objects, as ``mkqa_eval.py`` collects them.

    Every answer contributes its ``text`` (``""``, meaning No Answer, when the
    text is None, as for ``unanswerable`` and ``long_answer``) and all its
    ``aliases``, whatever its ``type``; ``binary`` answers are scored through
    their text ("yes"/"no"). Duplicates are dropped (the reference uses a set,
    so its order is arbitrary; here the first occurrence keeps its place).
    Unlike the reference, which fails, a missing ``text`` counts as None and
    ``aliases: None`` as no aliases.
    """
    texts: list[str] = []
    for answer in answers:
        texts.append(answer.get("text") or "")
        texts.extend(answer.get("aliases") or [])
    return list(dict.fromkeys(texts))


def is_answerable(golds: list[str]) -> bool:
    """The reference's split into answerable and unanswerable questions:
    unanswerable exactly when the deduplicated gold list is ``[""]``."""
    return list(dict.fromkeys(golds)) != [""]


def question_of(record: dict, lang: str) -> str:
    return record["queries"][language(lang).mkqa_key]


def answers_of(record: dict, lang: str) -> list[dict]:
    return record["answers"][language(lang).mkqa_key]


def _check_answers(record: dict, location: str, lang: str) -> None:
    key = language(lang).mkqa_key
    answers = record["answers"].get(key)
    if not isinstance(answers, list) or not answers or not all(isinstance(answer, dict) for answer in answers):
        raise QADataError(f"{location}: answers.{key}: expected a list of answer objects")


def validate_record(record: dict, location: str, languages: list[str], answer_languages: tuple[str, ...] = ()) -> dict:
    """Check that the record has a question and an answer list in every language, and an answer list
    in each of ``answer_languages`` (those a question filter reads); errors name the place."""
    for field in ("queries", "answers"):
        if not isinstance(record.get(field), dict):
            raise QADataError(f"{location}: field {field!r} is missing or not an object")
    for lang in languages:
        key = language(lang).mkqa_key
        question = record["queries"].get(key)
        if not isinstance(question, str) or not question.strip():
            raise QADataError(f"{location}: queries.{key}: missing or empty question")
        _check_answers(record, location, lang)
    for lang in answer_languages:
        _check_answers(record, location, lang)
    return record


def answer_type_name(value: object, location: str, type_names: tuple[str, ...] = MKQA_ANSWER_TYPES) -> object:
    """An answer's ``type`` as a name: a ClassLabel integer becomes ``type_names[value]``; a name stays."""
    if isinstance(value, bool) or not isinstance(value, int):
        return value
    if not 0 <= value < len(type_names):
        raise QADataError(f"{location}: answer type {value} is not one of the {len(type_names)} class labels")
    return type_names[value]


def _named_answers(answers: object, location: str, type_names: tuple[str, ...]) -> object:
    if not isinstance(answers, list):
        return answers  # validate_record names the problem
    return [
        {**answer, "type": answer_type_name(answer["type"], location, type_names)}
        if isinstance(answer, dict) and "type" in answer
        else answer
        for answer in answers
    ]


def with_type_names(record: dict, location: str, type_names: tuple[str, ...] = MKQA_ANSWER_TYPES) -> dict:
    """The record with every answer's integer ``type`` replaced by its ClassLabel name (a new dict; the
    input is left as it is)."""
    answers = record.get("answers")
    if not isinstance(answers, dict):
        return record  # validate_record names the problem
    named = {key: _named_answers(values, f"{location}: answers.{key}", type_names) for key, values in answers.items()}
    return {**record, "answers": named}


def scorable(record: dict, languages: list[str]) -> bool:
    """The ``every_language`` filter: whether every language asked has a short gold answer (no answer
    of an unscored type and at least one non-empty gold text)."""
    for lang in languages:
        answers = answers_of(record, lang)
        if any(answer.get("type") in UNSCORED_TYPES for answer in answers) or not any(gold_texts(answers)):
            return False
    return True


def english_first_answer_scorable(record: dict, languages: list[str]) -> bool:
    """The ``paper`` filter, as the authors' QA script: skip the question when the first English
    answer is ``long_answer`` or ``unanswerable`` (their ``type in [1, 2]``), whatever the other
    answers. A question with no gold text at all in a language asked is skipped too: there the
    authors' script stops with an error (the maximum of no F1 scores)."""
    if answers_of(record, PAPER_FILTER_LANGUAGE)[0].get("type") in UNSCORED_TYPES:
        return False
    return all(any(gold_texts(answers_of(record, lang))) for lang in languages)


@dataclass(frozen=True)
class QuestionFilter:
    """Which questions a QA run asks: ``keeps(record, languages)``, reading the answers of the languages
    asked plus ``answer_languages``."""

    keeps: Callable[[dict, list[str]], bool]
    answer_languages: tuple[str, ...] = ()


class UnknownQuestionFilterError(QADataError, UnknownEntryError):
    pass


QUESTION_FILTERS: Registry[QuestionFilter] = Registry("question filter", UnknownQuestionFilterError)
QUESTION_FILTERS.register(QuestionFilter(english_first_answer_scorable, (PAPER_FILTER_LANGUAGE,)), name="paper")
QUESTION_FILTERS.register(QuestionFilter(scorable), name="every_language")


def _file_records(path: Path) -> Iterable[tuple[str, dict]]:
    """Records of a JSON-lines file, gzipped (MKQA's own ``mkqa.jsonl.gz``) or not."""
    if not path.is_file():
        raise QADataError(f"{path}: QA file not found")
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    for number, line in enumerate(data.decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield f"{path}: line {number}", json.loads(line)
        except json.JSONDecodeError as error:
            raise QADataError(f"{path}: line {number}: not valid JSON ({error.msg})") from None


def hub_answer_type_names(features: Mapping[str, Any]) -> tuple[str, ...] | None:
    """The ClassLabel names of ``answers.<lang>[].type`` in a hub table's features; None where there are none."""
    from datasets import ClassLabel

    try:
        per_language = next(iter(features["answers"].values()))
        # A list feature is ``[{...}]`` in older datasets releases and ``List({...})`` (``.feature``) in newer.
        answer = per_language[0] if isinstance(per_language, list) else per_language.feature
        type_feature = answer["type"]
    except (KeyError, TypeError, IndexError, AttributeError, StopIteration):
        return None
    return tuple(type_feature.names) if isinstance(type_feature, ClassLabel) else None


def _hub_records(hub: dict) -> Iterable[tuple[str, dict]]:
    from datasets import load_dataset

    hub = dict(hub)
    name = hub.pop("dataset")
    table = load_dataset(name, hub.pop("name", None), split=hub.pop("split", "train"), **hub)
    # The table's own label order where it has one; MKQA's otherwise.
    type_names = hub_answer_type_names(table.features) or MKQA_ANSWER_TYPES
    for index, record in enumerate(table):
        location = f"{name}: row {index + 1}"
        yield location, with_type_names(dict(record), location, type_names)


def load_qa(source: dict, languages: list[str], limit: int | None = None, question_filter: str = "paper") -> list[dict]:
    """Scorable records from a JSON-lines file (``{"path": ...}``) or a hub dataset (``{"hub": {...}}``).

    ``question_filter`` names the rule in ``QUESTION_FILTERS`` that decides which questions are asked:
    ``paper`` (the first English answer's type, as the authors) or ``every_language`` (every answer
    of every language asked). Integer answer types become names first (MKQA's ClassLabel order).
    ``limit`` keeps the first ``limit`` records the filter keeps.
    """
    chosen = QUESTION_FILTERS[question_filter]
    located = _file_records(Path(source["path"])) if "path" in source else _hub_records(source["hub"])
    records = [
        validate_record(with_type_names(record, location), location, languages, chosen.answer_languages)
        for location, record in located
    ]
    kept = [record for record in records if chosen.keeps(record, languages)]
    if len(kept) < len(records):
        log.info("skipped %d of %d questions without a short answer in %s (question filter: %s)",
                 len(records) - len(kept), len(records), ", ".join(languages), question_filter)  # fmt: skip
    return kept[:limit] if limit else kept

"""Multilingual QA records in MKQA's schema: loading and checking.

A QA record has ``queries[key]`` (the question) and ``answers[key]``, a list of
``{"type", "text", "aliases", ...}``, where ``key`` is the language's MKQA code (``zh_cn`` for
Chinese; ``data.languages``). MKQA also has ``unanswerable`` and ``long_answer`` questions,
which have no short gold answer: like the paper's QA runs, the loader skips them (and logs how
many), so that every question a run asks can be scored.
"""

from __future__ import annotations

import gzip
import json
import logging
from collections.abc import Iterable
from pathlib import Path

from transfer_neurons.data.languages import language

log = logging.getLogger(__name__)

# Answer types without a short answer to compare a generated one with.
UNSCORED_TYPES = ("unanswerable", "long_answer")


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


def validate_record(record: dict, location: str, languages: list[str]) -> dict:
    """Check that the record has a question and an answer list in every language; errors name the place."""
    for field in ("queries", "answers"):
        if not isinstance(record.get(field), dict):
            raise QADataError(f"{location}: field {field!r} is missing or not an object")
    for lang in languages:
        key = language(lang).mkqa_key
        question = record["queries"].get(key)
        if not isinstance(question, str) or not question.strip():
            raise QADataError(f"{location}: queries.{key}: missing or empty question")
        answers = record["answers"].get(key)
        if not isinstance(answers, list) or not answers or not all(isinstance(answer, dict) for answer in answers):
            raise QADataError(f"{location}: answers.{key}: expected a list of answer objects")
    return record


def scorable(record: dict, languages: list[str]) -> bool:
    """Whether every language has a short gold answer (no unanswerable or long-answer question)."""
    for lang in languages:
        answers = answers_of(record, lang)
        if any(answer.get("type") in UNSCORED_TYPES for answer in answers) or not any(gold_texts(answers)):
            return False
    return True


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


def _hub_records(hub: dict) -> Iterable[tuple[str, dict]]:
    from datasets import load_dataset

    hub = dict(hub)
    name = hub.pop("dataset")
    table = load_dataset(name, hub.pop("name", None), split=hub.pop("split", "train"), **hub)
    for index, record in enumerate(table):
        yield f"{name}: row {index + 1}", dict(record)


def load_qa(source: dict, languages: list[str], limit: int | None = None) -> list[dict]:
    """Scorable records from a JSON-lines file (``{"path": ...}``) or a hub dataset (``{"hub": {...}}``).

    ``limit`` keeps the first ``limit`` scorable records.
    """
    located = _file_records(Path(source["path"])) if "path" in source else _hub_records(source["hub"])
    records = [validate_record(record, location, languages) for location, record in located]
    kept = [record for record in records if scorable(record, languages)]
    if len(kept) < len(records):
        log.info("skipped %d of %d questions without a short answer in %s", len(records) - len(kept),
                 len(records), ", ".join(languages))  # fmt: skip
    return kept[:limit] if limit else kept

"""Multilingual QA records in MKQA's schema: loading and checking.

A QA record has ``queries[lang]`` (the question) and ``answers[lang]``, a list of
``{"type", "text", "aliases"}``.
"""

from __future__ import annotations

import json
from pathlib import Path


class QADataError(ValueError):
    pass


def gold_texts(answers: list[dict]) -> list[str]:
    return [text for answer in answers for text in [answer["text"], *answer.get("aliases", [])] if text]


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

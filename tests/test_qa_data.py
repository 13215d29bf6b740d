"""QA records in MKQA's schema: the built-in set, MKQA's own layout, and errors that name the place."""

import gzip
import json

import pytest

from tests.workflow_helpers import QA_SET
from transfer_neurons.data.qa import QADataError, answers_of, load_qa, question_of

BUILTIN_LANGUAGES = ["en", "ja", "nl", "ko", "it", "zh", "de", "es", "ru", "ar", "hi", "th", "vi"]
MKQA_KEYS = [
    "ar", "da", "de", "en", "es", "fi", "fr", "he", "hu", "it", "ja", "km", "ko",
    "ms", "nl", "no", "pl", "pt", "ru", "sv", "th", "tr", "vi", "zh_cn", "zh_hk", "zh_tw",
]  # fmt: skip


def test_builtin_qa_set_has_every_language_and_only_scorable_questions():
    records = load_qa({"path": str(QA_SET)}, BUILTIN_LANGUAGES)
    assert len(records) == 172  # none skipped
    assert question_of(records[0], "zh") == records[0]["queries"]["zh_cn"]  # Chinese is MKQA's zh_cn


def mkqa_record(example_id: int, answer: dict) -> dict:
    """One record laid out like MKQA's tests/testdata: an integer id, all 26 languages in queries and answers."""
    return {
        "example_id": example_id,
        "query": "who sings the theme song?",
        "queries": {key: f"question in {key}" for key in MKQA_KEYS},
        "answers": {key: [answer] for key in MKQA_KEYS},
    }


def test_records_in_mkqa_layout_load_and_unscorable_ones_are_skipped(tmp_path):
    records = [
        mkqa_record(
            -7134711402398425599, {"type": "entity", "entity": "Q56005", "text": "Dave Edmunds", "aliases": ["Edmunds"]}
        ),  # fmt: skip
        mkqa_record(4135245618541296371, {"type": "unanswerable", "text": None}),
        mkqa_record(1398423817934328197, {"type": "long_answer", "text": None}),
        mkqa_record(5623476234762347623, {"type": "date", "text": "2017-05-18", "aliases": ["18 May 2017"]}),
    ]
    path = tmp_path / "mkqa.jsonl.gz"
    path.write_bytes(gzip.compress("\n".join(json.dumps(record) for record in records).encode()))
    loaded = load_qa({"path": str(path)}, ["ja", "zh"])
    assert [record["example_id"] for record in loaded] == [-7134711402398425599, 5623476234762347623]
    assert answers_of(loaded[1], "zh")[0]["aliases"] == ["18 May 2017"]
    assert len(load_qa({"path": str(path)}, ["ja"], limit=1)) == 1


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"queries": {"en": "Q?"}}', r"line 1: field 'answers' is missing"),
        ('{"queries": {"en": " "}, "answers": {"en": [{"text": "A"}]}}', r"line 1: queries.en: missing or empty"),
        ('{"queries": {"zh_cn": "Q?"}, "answers": {"zh_cn": []}}', r"line 1: answers.zh_cn: expected a list"),
        ("{not json", r"line 1: not valid JSON"),
    ],
)
def test_malformed_qa_line_is_named(tmp_path, line, message):
    path = tmp_path / "qa.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(QADataError, match=message):
        load_qa({"path": str(path)}, ["zh" if "zh_cn" in line else "en"])

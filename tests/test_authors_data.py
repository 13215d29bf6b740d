"""The authors' published pickles: a reader that runs no code, their corpus and questions in our
tables, and the paper's QA question filter next to ours (issue 21)."""

from __future__ import annotations

import builtins
import copy
import json
import os
import pickle

import polars as pl
import pytest
import yaml

from tests.workflow_helpers import REPO
from transfer_neurons.data.authors_data import AuthorsDataError, authors_parallel_questions
from transfer_neurons.data.corpus import CorpusError, prepare_corpus
from transfer_neurons.data.qa import (
    MKQA_ANSWER_TYPES,
    QADataError,
    answer_type_name,
    answers_of,
    hub_answer_type_names,
    load_qa,
    with_type_names,
)
from transfer_neurons.data.safe_pickle import UnsafePickleError, load_plain_pickle

# --- a reader that runs no code -----------------------------------------------------------------


class RunsShell:
    """Unpickling this with the standard unpickler runs ``touch marker`` through ``os.system``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


class RunsEval:
    """Unpickling this with the standard unpickler creates ``marker`` through ``builtins.eval``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (builtins.eval, (f"open({self.marker!r}, 'w').close()",))


PAYLOADS = [
    pytest.param(RunsShell, f"{os.system.__module__}.system", id="os.system"),  # posix.system on Linux
    # Protocols 0-2 write Python 2's module name, which the refusal quotes as written.
    pytest.param(RunsEval, r"(builtins|__builtin__)\.eval", id="builtins.eval"),
]


@pytest.mark.parametrize(("payload", "global_name"), PAYLOADS)
@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_a_pickle_that_calls_a_function_is_refused_and_nothing_runs(tmp_path, payload, global_name, protocol):
    marker = tmp_path / "it-ran"
    path = tmp_path / "evil.pkl"
    # Buried inside plain data, as a tampered sentence list would hold it.
    path.write_bytes(pickle.dumps([("Hello.", "こんにちは。"), payload(marker)], protocol=protocol))
    with pytest.raises(UnsafePickleError, match=rf"{path}: refused the global {global_name}\b"):
        load_plain_pickle(path)
    assert not marker.exists()


@pytest.mark.parametrize(("payload", "global_name"), PAYLOADS)
def test_the_payloads_do_run_under_the_standard_unpickler(tmp_path, payload, global_name):
    """The control: without the safe reader the same bytes do call the function."""
    marker = tmp_path / "it-ran"
    pickle.loads(pickle.dumps(payload(marker)))  # noqa: S301 (on purpose)
    assert marker.exists()


def test_a_refused_pickle_as_a_corpus_source_stops_the_corpus_and_runs_nothing(tmp_path):
    marker = tmp_path / "it-ran"
    train = tmp_path / "ja_parallel_train.pkl"
    test = write_pickle(tmp_path / "ja_parallel_test.pkl", [("Hi.", "やあ。")])
    train.write_bytes(pickle.dumps([RunsShell(marker)]))
    with pytest.raises(UnsafePickleError, match=rf"{train}: refused the global {os.system.__module__}.system"):
        prepare_corpus({"authors": {"train": str(train), "test": str(test)}}, "en", "ja", test_percent=30)
    assert not marker.exists()


@pytest.mark.parametrize("opcodes", [b"Pfoo\n.", b"X\x03\x00\x00\x00foo" + b"Q."], ids=["PERSID", "BINPERSID"])
def test_persistent_ids_are_refused(tmp_path, opcodes):
    path = tmp_path / "persistent.pkl"
    path.write_bytes(opcodes)
    with pytest.raises(UnsafePickleError, match=rf"{path}: refused a persistent id"):
        load_plain_pickle(path)


@pytest.mark.parametrize(
    ("value", "where", "type_name"),
    [
        ({"ja": [1, {2, 3}]}, r"\['ja'\]\[1\]", "set"),  # sets and frozensets need no global
        ([frozenset({1})], r"\[0\]", "frozenset"),
        ({"a": bytearray(b"x")}, r"\['a'\]", "bytearray"),  # protocol 5 has an opcode for it
    ],
)
def test_values_outside_plain_data_are_refused_even_without_a_global(tmp_path, value, where, type_name):
    path = write_pickle(tmp_path / "set.pkl", value, protocol=5)
    with pytest.raises(UnsafePickleError, match=rf"{path}: {where}: a {type_name};"):
        load_plain_pickle(path)


def test_plain_data_loads_unchanged_including_shared_and_self_referencing_lists(tmp_path):
    shared = ["shared"]
    value = {"pairs": [("I eat.", "食べる。"), ("x", "y")], "n": 3, "f": 0.5, "ok": True, "none": None,
             "bytes": b"\x00", "a": shared, "b": shared}  # fmt: skip
    assert load_plain_pickle(write_pickle(tmp_path / "plain.pkl", value)) == value
    looped = [1]
    looped.append(looped)
    loaded = load_plain_pickle(write_pickle(tmp_path / "loop.pkl", looped))
    assert loaded[1] is loaded


def test_a_truncated_pickle_and_a_missing_one_are_named(tmp_path):
    path = tmp_path / "cut.pkl"
    path.write_bytes(pickle.dumps([("a", "b")] * 10)[:-5])
    with pytest.raises(UnsafePickleError, match=rf"{path}: not a readable pickle of plain data"):
        load_plain_pickle(path)
    with pytest.raises(FileNotFoundError, match="absent.pkl: pickle file not found"):
        load_plain_pickle(tmp_path / "absent.pkl")


# --- the authors' parallel pairs as a corpus ------------------------------------------------------


def write_pickle(path, value, protocol=4):
    path.write_bytes(pickle.dumps(value, protocol=protocol))
    return path


TRAIN = [("I eat bread.", "パンを食べる。"), ("It is raining.", "雨が降っている。"), ("She runs.", "彼女は走る。")]
TEST = [("Good night.", "おやすみ。"), ("I am hungry.", "お腹が空いた。")]


def authors_source(tmp_path, train=TRAIN, test=TEST, lang="ja"):
    """An ``authors`` corpus source over pickles laid out like the authors' (lists of (en, L2) tuples)."""
    return {
        "authors": {
            "train": str(write_pickle(tmp_path / f"{lang}_parallel_train.pkl", train)),
            "test": str(write_pickle(tmp_path / f"{lang}_parallel_test.pkl", test)),
        }
    }


def test_authors_pairs_become_corpus_rows_with_their_own_split(tmp_path):
    source = authors_source(tmp_path)
    pairs, dropped = prepare_corpus(source, "en", "ja", test_percent=30, duplicates="keep")
    assert pairs.rows() == [
        ("ja", "train-000000", "train", "I eat bread.", "パンを食べる。"),
        ("ja", "train-000001", "train", "It is raining.", "雨が降っている。"),
        ("ja", "train-000002", "train", "She runs.", "彼女は走る。"),
        ("ja", "test-000000", "test", "Good night.", "おやすみ。"),
        ("ja", "test-000001", "test", "I am hungry.", "お腹が空いた。"),
    ]
    assert dropped.columns == ["language", "id", "pivot_text", "target_text", "reason"] and dropped.height == 0
    # The hash split plays no part: any test_percent gives the same table.
    assert prepare_corpus(source, "en", "ja", test_percent=99, duplicates="keep")[0].equals(pairs)
    capped, _ = prepare_corpus(source, "en", "ja", test_percent=30, max_train=2, max_test=1)
    assert capped["id"].to_list() == ["train-000000", "train-000001", "test-000000"]


def test_the_duplicate_policy_applies_across_the_authors_splits(tmp_path):
    test = [("Good night.", "おやすみ。"), ("She runs.", "彼女は走ります。")]  # repeats a train English sentence
    source = authors_source(tmp_path, test=test)
    pairs, dropped = prepare_corpus(source, "en", "ja", test_percent=30, duplicates="drop")
    assert dropped.select("id", "reason").rows() == [("test-000001", "repeated en sentence")]
    assert pairs.filter(pl.col("split") == "test")["id"].to_list() == ["test-000000"]
    train_file, test_file = source["authors"]["train"], source["authors"]["test"]
    with pytest.raises(
        CorpusError, match=rf"{test_file}: element 1: column 'en': duplicate of {train_file}: element 2"
    ):
        prepare_corpus(source, "en", "ja", test_percent=30, duplicates="error")


@pytest.mark.parametrize(
    ("train", "message"),
    [
        (
            TRAIN[:1] + [("a", "b", "c")],
            r"element 1: expected an \(English, L2\) pair of two strings, got a tuple of 3",
        ),
        (TRAIN[:2] + [("She runs.", None)], r"element 2: the ja sentence is not a string but NoneType"),
        ([(7, "七")], r"element 0: the en sentence is not a string but int"),
        (["I eat bread."], r"element 0: expected an \(English, L2\) pair of two strings, got str"),
        ([("  ", "空白")], r"element 0: column 'en': empty or whitespace-only sentence"),
        ({"en": "x"}, r"expected a list of \(English, L2\) pairs, got a dict"),
        ([], r"no sentence pairs"),
    ],
    ids=["three-tuple", "none-sentence", "int-sentence", "bare-string", "blank", "dict", "empty"],
)
def test_malformed_authors_pickles_are_named_by_file_and_element(tmp_path, train, message):
    source = authors_source(tmp_path, train=train)
    with pytest.raises(CorpusError, match=rf"{source['authors']['train']}: {message}"):
        prepare_corpus(source, "en", "ja", test_percent=30)


def test_authors_source_configuration_mistakes_are_named(tmp_path):
    source = authors_source(tmp_path)
    with pytest.raises(CorpusError, match="pivot_language must be 'en', got 'ja'"):
        prepare_corpus(source, "ja", "ko", test_percent=30)
    swapped = {"authors": {"train": source["authors"]["test"], "test": source["authors"]["train"]}}
    with pytest.raises(CorpusError, match="ja_parallel_test.pkl: configured as the train file of 'ja', but the name"):
        prepare_corpus(swapped, "en", "ja", test_percent=30)
    with pytest.raises(CorpusError, match="ja_parallel_train.pkl: configured as the train file of 'ko'"):
        prepare_corpus(source, "en", "ko", test_percent=30)
    missing = {"authors": {"train": str(tmp_path / "absent.pkl"), "test": source["authors"]["test"]}}
    with pytest.raises(CorpusError, match="absent.pkl: corpus file not found"):
        prepare_corpus(missing, "en", "ja", test_percent=30)
    with pytest.raises(CorpusError, match=r"needs 'train' and 'test' files; missing \['test'\]"):
        prepare_corpus({"authors": {"train": source["authors"]["train"]}}, "en", "ja", test_percent=30)


def test_the_schema_accepts_an_authors_source_and_refuses_a_malformed_one():
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    schema = str(REPO / "config" / "schema.yaml")
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    files = {"train": "data/ja_parallel_train.pkl", "test": "data/ja_parallel_test.pkl"}
    config["corpus"]["sources"]["ja"] = {"authors": dict(files)}
    validate(copy.deepcopy(config), schema)
    for broken in ({"authors": {"train": files["train"]}}, {"authors": {**files, "split": "x"}},
                   {"authors": dict(files), "path": "x.tsv"}):  # fmt: skip
        config["corpus"]["sources"]["ja"] = broken
        with pytest.raises(WorkflowError):
            validate(copy.deepcopy(config), schema)


# --- the authors' MKQA questions ------------------------------------------------------------------


QUESTIONS = {
    "ja": ["フランスの首都はどこ？", "富士山の高さは？"],
    "nl": ["wat is de hoofdstad van frankrijk", "hoe hoog is de fuji"],
    "en": ["what is the capital of france", "how high is mount fuji"],
}


def test_authors_questions_become_one_row_per_question_and_a_column_per_language(tmp_path):
    table = authors_parallel_questions(write_pickle(tmp_path / "mkqa_example_sentences.pkl", QUESTIONS))
    assert table.columns == ["ja", "nl", "en"]
    assert table.row(1) == ("富士山の高さは？", "hoe hoog is de fuji", "how high is mount fuji")
    # Written to parquet, the table is a corpus file: English-L2 pairs per row.
    table.write_parquet(tmp_path / "questions.parquet")
    pairs, _ = prepare_corpus({"path": str(tmp_path / "questions.parquet")}, "en", "nl", test_percent=50)
    assert sorted(pairs["target_text"]) == sorted(QUESTIONS["nl"])


@pytest.mark.parametrize(
    ("questions", "message"),
    [
        ({**QUESTIONS, "ko": ["한 질문"]}, r"languages hold different numbers of questions"),
        ({**QUESTIONS, "xx": ["a", "b"]}, r"key 'xx': unknown language code"),
        ({**QUESTIONS, "nl": ["ok", 5]}, r"nl: element 1: empty or not a string"),
        ({**QUESTIONS, "en": ["ok", " "]}, r"en: element 1: empty or not a string"),
        ([["a", "b"]], r"expected a dict of language code -> list of questions"),
    ],
    ids=["lengths", "unknown-language", "non-string", "blank", "list"],
)
def test_malformed_question_files_are_named(tmp_path, questions, message):
    path = write_pickle(tmp_path / "questions.pkl", questions)
    with pytest.raises(AuthorsDataError, match=rf"{path}: {message}"):
        authors_parallel_questions(path)


# --- the QA question filter: the paper's and ours --------------------------------------------------


def qa_record(example_id: str, answers: dict[str, list[dict]]) -> dict:
    return {"example_id": example_id, "queries": {key: f"question {example_id} in {key}" for key in answers},
            "answers": answers}  # fmt: skip


ENTITY = {"type": "entity", "text": "Paris", "aliases": []}
UNANSWERABLE = {"type": "unanswerable", "text": None}
LONG = {"type": "long_answer", "text": None}

FILTER_RECORDS = [
    qa_record("both", {"en": [ENTITY], "ja": [ENTITY]}),
    # English answerable, Japanese only a long answer (no gold text): the authors' script would stop with an
    # error on it (the maximum of no F1 scores), so the paper filter skips it in Japanese, as every_language does.
    qa_record("en-ok-ja-long", {"en": [ENTITY], "ja": [LONG]}),
    # English first answer unanswerable, Japanese answerable: the paper skips it, every_language asks it.
    qa_record("en-unanswerable", {"en": [UNANSWERABLE], "ja": [ENTITY]}),
    # Only the first English answer counts for the paper; every_language sees the second one too.
    qa_record("en-second-unscored", {"en": [ENTITY, UNANSWERABLE], "ja": [ENTITY]}),
]


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records))
    return {"path": str(path)}


@pytest.mark.parametrize(
    ("question_filter", "languages", "kept"),
    [
        ("paper", ["ja"], ["both", "en-second-unscored"]),
        ("every_language", ["ja"], ["both", "en-unanswerable", "en-second-unscored"]),
        ("paper", ["en"], ["both", "en-ok-ja-long", "en-second-unscored"]),
        ("every_language", ["en"], ["both", "en-ok-ja-long"]),
    ],
)
def test_the_two_question_filters_keep_what_they_say(tmp_path, question_filter, languages, kept):
    source = write_jsonl(tmp_path / "qa.jsonl", FILTER_RECORDS)
    records = load_qa(source, languages, question_filter=question_filter)
    assert [record["example_id"] for record in records] == kept


def test_the_paper_filter_is_the_default_and_unknown_filters_are_refused(tmp_path):
    source = write_jsonl(tmp_path / "qa.jsonl", FILTER_RECORDS)
    assert load_qa(source, ["ja"]) == load_qa(source, ["ja"], question_filter="paper")
    with pytest.raises(QADataError, match="unknown question filter 'strict'; registered: paper, every_language"):
        load_qa(source, ["ja"], question_filter="strict")


def test_the_paper_filter_needs_english_answers_and_names_the_line(tmp_path):
    source = write_jsonl(tmp_path / "qa.jsonl", [qa_record("no-en", {"ja": [ENTITY]})])
    with pytest.raises(QADataError, match=r"qa.jsonl: line 1: answers.en: expected a list of answer objects"):
        load_qa(source, ["ja"], question_filter="paper")
    assert len(load_qa(source, ["ja"], question_filter="every_language")) == 1


def test_both_filters_keep_every_builtin_question_in_the_default_languages():
    source = {"path": str(REPO / "data" / "qa" / "builtin_mkqa.jsonl")}
    for lang in ("ja", "nl", "ko", "it"):
        assert len(load_qa(source, [lang], question_filter="paper")) == 172
        assert len(load_qa(source, [lang], question_filter="every_language")) == 172


# --- integer answer types (the hub's ClassLabel) ---------------------------------------------------


def test_integer_answer_types_map_to_mkqa_class_label_names():
    # apple/mkqa's ClassLabel order; the authors skip types 1 and 2.
    assert [answer_type_name(index, "x") for index in (0, 1, 2, 6, 7)] == [
        "entity", "long_answer", "unanswerable", "short_phrase", "binary",
    ]  # fmt: skip
    assert len(MKQA_ANSWER_TYPES) == 8
    assert answer_type_name("date", "x") == "date"
    with pytest.raises(QADataError, match=r"row 3: answers.ja: answer type 8 is not one of the 8 class labels"):
        with_type_names({"answers": {"ja": [{"type": 8}]}}, "row 3")
    record = {"answers": {"en": [{"type": 2, "text": None}], "ja": [{"type": "entity", "text": "x"}]}}
    named = with_type_names(record, "row 1")
    assert [answers_of(named, "en")[0]["type"], answers_of(named, "ja")[0]["type"]] == ["unanswerable", "entity"]
    assert record["answers"]["en"][0]["type"] == 2  # the input is left as it is


def test_integer_types_in_a_file_are_filtered_like_names(tmp_path):
    records = [qa_record("one", {"en": [{**ENTITY, "type": 0}], "ja": [ENTITY]}),
               qa_record("two", {"en": [{"type": 1, "text": None}], "ja": [ENTITY]}),
               qa_record("three", {"en": [{"type": 2, "text": None}], "ja": [ENTITY]})]  # fmt: skip
    loaded = load_qa(write_jsonl(tmp_path / "qa.jsonl", records), ["ja"], question_filter="paper")
    assert [record["example_id"] for record in loaded] == ["one"]
    assert answers_of(loaded[0], "en")[0]["type"] == "entity"


def hub_mkqa_dir(tmp_path, type_names, rows):
    """A local dataset folder read through ``load_dataset``, with a ClassLabel answer type as on the hub."""
    from datasets import ClassLabel, Dataset, Features, List, Value

    answer = {"type": ClassLabel(names=list(type_names)), "text": Value("string"), "aliases": List(Value("string"))}
    features = Features({"example_id": Value("string"), "queries": {"en": Value("string"), "ja": Value("string")},
                         "answers": {"en": List(answer), "ja": List(answer)}})  # fmt: skip
    folder = tmp_path / "mkqa-hub"
    folder.mkdir()
    Dataset.from_list(rows, features=features).to_parquet(str(folder / "train-00000.parquet"))
    return folder


def hub_row(example_id, en_type, ja_type):
    def answers(label):
        return [{"type": label, "text": None if label in (1, 2) else "Paris", "aliases": []}]

    return {"example_id": example_id, "queries": {"en": "q", "ja": "q"},
            "answers": {"en": answers(en_type), "ja": answers(ja_type)}}  # fmt: skip


def test_hub_integer_labels_become_names_and_the_paper_filter_skips_types_1_and_2(tmp_path):
    rows = [hub_row("entity", 0, 0), hub_row("long", 1, 0), hub_row("unanswerable", 2, 0), hub_row("ja-long", 0, 1)]
    folder = hub_mkqa_dir(tmp_path, MKQA_ANSWER_TYPES, rows)
    source = {"hub": {"dataset": str(folder)}}
    paper = load_qa(source, ["ja"], question_filter="paper")
    assert [record["example_id"] for record in paper] == ["entity"]  # ja-long: no Japanese gold text
    every = load_qa(source, ["ja"], question_filter="every_language")
    assert [record["example_id"] for record in every] == ["entity", "long", "unanswerable"]
    assert answers_of(every[1], "en")[0]["type"] == "long_answer"  # the integer label 1, named


def test_a_hub_table_with_its_own_label_order_is_read_by_that_order(tmp_path):
    from datasets import load_dataset

    shuffled = ("unanswerable", "entity", "long_answer")
    folder = hub_mkqa_dir(tmp_path, shuffled, [hub_row("x", 0, 1)])
    assert hub_answer_type_names(load_dataset(str(folder), split="train").features) == shuffled
    # Label 0 is "unanswerable" in this table (it would be "entity" in MKQA's order).
    assert load_qa({"hub": {"dataset": str(folder)}}, ["ja"], question_filter="paper") == []

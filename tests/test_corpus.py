import json
from pathlib import Path

import polars as pl
import pytest

from transfer_neurons.data.corpus import (
    CorpusError,
    assign_splits,
    load_file_pairs,
    load_hub_pairs,
    prepare_corpus,
    sentences,
    split_of,
)
from transfer_neurons.data.languages import UnknownLanguageError

BUILTIN = Path(__file__).resolve().parents[1] / "data" / "corpus" / "builtin"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


BUILTIN_LANGUAGES = ("ja", "nl", "ko", "it", "zh", "de", "es", "ru", "ar", "hi", "th", "vi")


def test_builtin_corpus_is_valid_and_every_row_has_every_language():
    frames = {lang: load_file_pairs(BUILTIN / f"en-{lang}.tsv", "en", lang) for lang in BUILTIN_LANGUAGES}
    for frame in frames.values():
        assert frame.height == 460
        assert frame["target_text"].n_unique() == frame.height  # no repeated translation
    english = [frame.select("id", "pivot_text") for frame in frames.values()]
    assert all(other.equals(english[0]) for other in english[1:])  # shared ids: 13-way parallel


def test_a_row_missing_one_language_is_named(tmp_path):
    path = write(
        tmp_path / "wide.tsv", "id\ten\tja\tde\ns1\tHello.\tこんにちは。\tHallo.\ns2\tThanks.\tありがとう。\t\n"
    )
    assert load_file_pairs(path, "en", "ja").height == 2
    with pytest.raises(CorpusError, match=r"wide.tsv: line 3: column 'de': empty or whitespace-only sentence"):
        load_file_pairs(path, "en", "de")


@pytest.mark.parametrize("suffix", [".tsv", ".csv", ".jsonl", ".parquet"])
def test_every_user_format_loads_the_same_pairs(tmp_path, suffix):
    rows = {"id": ["a", "b"], "en": ["Good morning.", "Thank you."], "it": ["Buongiorno.", "Grazie."]}
    path = tmp_path / f"pairs{suffix}"
    frame = pl.DataFrame(rows)
    if suffix == ".tsv":
        frame.write_csv(path, separator="\t")
    elif suffix == ".csv":
        frame.write_csv(path)
    elif suffix == ".jsonl":
        frame.write_ndjson(path)
    else:
        frame.write_parquet(path)
    loaded = load_file_pairs(path, "en", "it")
    assert loaded["target_text"].to_list() == ["Buongiorno.", "Grazie."]
    assert loaded["id"].to_list() == ["a", "b"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("id\ten\tja\na\tHello.\t \n", r"line 2: column 'ja': empty or whitespace-only"),
        ("id\ten\tja\na\tHello.\n", r"line 2: 2 fields where the header has 3"),
        ("id\ten\tnl\na\tHello.\tHallo.\n", r"no column 'ja'"),
    ],
)
def test_malformed_tsv_names_file_row_and_column(tmp_path, content, message):
    path = write(tmp_path / "bad.tsv", content)
    with pytest.raises(CorpusError, match=message) as error:
        load_file_pairs(path, "en", "ja")
    assert str(path) in str(error.value)


def test_undecodable_bytes_name_the_line(tmp_path):
    path = tmp_path / "latin1.tsv"
    path.write_bytes("id\ten\tit\na\tHello.\tCiao.\nb\tCoffee.\tCaff\xe8.\n".encode("latin-1"))
    with pytest.raises(CorpusError, match=r"latin1.tsv: line 3: bytes that are not UTF-8"):
        load_file_pairs(path, "en", "it")


def test_jsonl_missing_language_is_a_mismatched_pair(tmp_path):
    path = write(tmp_path / "p.jsonl", json.dumps({"en": "Hi.", "ko": "안녕."}) + "\n" + json.dumps({"en": "Yes."}))
    with pytest.raises(CorpusError, match=r"line 2: column 'ko': missing; pairs are mismatched"):
        load_file_pairs(path, "en", "ko")


def test_unknown_language_lists_known_codes(tmp_path):
    path = write(tmp_path / "p.tsv", "en\txx\nHi.\tHo.\n")
    with pytest.raises(UnknownLanguageError, match="known codes: .*ja"):
        load_file_pairs(path, "en", "xx")


def test_missing_file_and_unsupported_format(tmp_path):
    with pytest.raises(CorpusError, match="not found"):
        load_file_pairs(tmp_path / "none.tsv", "en", "ja")
    with pytest.raises(CorpusError, match="unsupported corpus format"):
        load_file_pairs(write(tmp_path / "p.xlsx", "x"), "en", "ja")


def test_split_rule_is_fixed_and_order_independent():
    ids = [f"s{i:04d}" for i in range(1000)]
    splits = [split_of(pair_id, 30) for pair_id in ids]
    assert 250 < splits.count("test") < 350
    pairs = pl.DataFrame({"id": ids, "pivot_text": ids, "target_text": ids})
    forward = assign_splits(pairs, 30)
    backward = assign_splits(pairs.reverse(), 30)
    assert dict(zip(forward["id"], forward["split"], strict=True)) == dict(
        zip(backward["id"], backward["split"], strict=True)
    )


def test_caps_limit_each_split():
    ids = [f"s{i:04d}" for i in range(200)]
    pairs = assign_splits(pl.DataFrame({"id": ids, "pivot_text": ids, "target_text": ids}), 50, 10, 5)
    assert len(sentences(pairs, "train", "pivot")) == 10
    assert len(sentences(pairs, "test", "target")) == 5


def test_a_split_the_source_carries_is_kept_not_rehashed():
    ids = [f"s{i:04d}" for i in range(6)]
    given = ["test", "train", "train", "test", "train", "train"]
    assert [split_of(pair_id, 50) for pair_id in ids] != given  # the hash rule alone would differ
    pairs = pl.DataFrame({"id": ids, "pivot_text": ids, "target_text": ids, "split": given})
    kept = assign_splits(pairs, 50)
    assert dict(zip(kept["id"], kept["split"], strict=True)) == dict(zip(ids, given, strict=True))


def test_hub_loader_reads_tatoeba_layout_from_local_files(tmp_path):
    """The hub code path, driven by a local parquet file with Tatoeba's ``translation`` layout."""
    records = [
        {"id": "1", "translation": {"en": "I'm hungry.", "ja": "お腹が空きました。"}},
        {"id": "2", "translation": {"en": "I'm hungry.", "ja": "腹が減った。"}},  # repeated English: dropped
        {"id": "3", "translation": {"en": "It's raining.", "ja": "雨が降っています。"}},
    ] + [
        {"id": f"n{i}", "translation": {"en": f"I have {i} cats.", "ja": f"猫を{i}匹飼っています。"}} for i in range(20)
    ]
    data_dir = tmp_path / "tatoeba"
    data_dir.mkdir()
    pl.DataFrame(records).write_parquet(data_dir / "train-00000.parquet")
    pairs = load_hub_pairs(str(data_dir), "en", "ja", split="train")
    assert pairs["pivot_text"].to_list()[:3] == ["I'm hungry.", "I'm hungry.", "It's raining."]
    prepared, dropped = prepare_corpus({"hub": {"dataset": str(data_dir)}}, "en", "ja", test_percent=50)
    assert set(prepared["split"]) == {"train", "test"}
    assert prepared.height == 22
    assert dropped.select("id", "reason").rows() == [("2", "repeated en sentence")]


def test_hub_loader_maps_named_columns_to_language_codes(tmp_path):
    """sentence-transformers' Tatoeba layout: flat ``english`` / ``non_english`` columns."""
    data_dir = tmp_path / "st-tatoeba"
    data_dir.mkdir()
    english = [f"I see {i} birds." for i in range(5)]
    japanese = [f"鳥が{i}羽見えます。" for i in range(5)]
    pl.DataFrame({"english": english, "non_english": japanese}).write_parquet(data_dir / "train-00000.parquet")
    pairs = load_hub_pairs(
        str(data_dir), "en", "ja", split="train", translation_field=None,
        columns={"english": "en", "non_english": "ja"},
    )  # fmt: skip
    assert pairs["pivot_text"].to_list() == english
    assert pairs["target_text"].to_list() == japanese


# Tatoeba as published: one English sentence with several translations, and a pair held twice.
TATOEBA_LIKE = """id\ten\tja
1\tI'm hungry.\tお腹が空きました。
2\tI'm hungry.\t腹が減った。
3\tIt's raining.\t雨が降っています。
4\tIt rains.\t雨が降っています。
5\tI'm hungry.\tお腹が空きました。
6\tGood night.\tおやすみなさい。
"""


def test_duplicates_drop_keeps_the_first_pair_of_each_repeated_sentence(tmp_path):
    path = write(tmp_path / "tatoeba.tsv", TATOEBA_LIKE)
    pairs, dropped = prepare_corpus({"path": str(path)}, "en", "ja", test_percent=50, duplicates="drop")
    assert sorted(pairs["id"]) == ["1", "3", "6"]
    assert dict(dropped.select("id", "reason").rows()) == {
        "2": "repeated en sentence",
        "4": "repeated ja sentence",
        "5": "repeated en sentence",
    }
    for column in ("pivot_text", "target_text"):  # no two kept pairs share a side
        assert pairs[column].n_unique() == pairs.height


def test_duplicates_keep_and_error(tmp_path):
    path = write(tmp_path / "tatoeba.tsv", TATOEBA_LIKE)
    kept, dropped = prepare_corpus({"path": str(path)}, "en", "ja", test_percent=50, duplicates="keep")
    assert kept.height == 6 and dropped.height == 0
    with pytest.raises(CorpusError, match=r"line 3: column 'en': duplicate of line 2 .*corpus.duplicates"):
        prepare_corpus({"path": str(path)}, "en", "ja", test_percent=50, duplicates="error")


def test_dropping_duplicates_keeps_every_other_pair_in_its_split(tmp_path):
    clean = write(tmp_path / "clean.tsv", "id\ten\tja\n1\tI'm hungry.\tお腹が空きました。\n"
                  "3\tIt's raining.\t雨が降っています。\n6\tGood night.\tおやすみなさい。\n")  # fmt: skip
    with_repeats = write(tmp_path / "tatoeba.tsv", TATOEBA_LIKE)
    split = {
        path.name: dict(
            prepare_corpus({"path": str(path)}, "en", "ja", test_percent=50)[0].select("id", "split").rows()
        )
        for path in (clean, with_repeats)
    }
    assert split["clean.tsv"] == split["tatoeba.tsv"]

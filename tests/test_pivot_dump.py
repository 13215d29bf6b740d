"""The English side dumped once per split and copied into every language's dump."""

import json

import numpy as np
import polars as pl
import pytest

from tests.tiny import save_tiny_model
from transfer_neurons.data.dumps import (
    EXTRA_STATES,
    STATE_ARRAYS,
    Dump,
    distinct_pivot_sentences,
    dump_pivot_split,
    dump_split,
    pivot_rows,
)
from transfer_neurons.detection.lape import activation_probabilities
from transfer_neurons.detection.stages import language_activity
from transfer_neurons.model.loading import prepare_model

ENGLISH = ["The cat sleeps.", "Where is the station?", "I like green tea very much.", "It rains.", "Good night."]
TARGETS = {"ja": [f"文{i}です。" for i in range(5)], "nl": [f"Zin nummer {i}." for i in range(5)]}
DUMP_SETTINGS = {"batch_size": 2, "max_batch_tokens": None, "max_tokens": None, "device": "cpu"}


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    root = tmp_path_factory.mktemp("pivot-dump")
    prepare_model("tiny", {"path": str(save_tiny_model("llama", root / "model"))}, root / "out")
    return root / "out" / "manifest.json"


def write_corpus(path, lang, english, split="train"):
    pl.DataFrame({"language": lang, "id": [f"{lang}{row}" for row in range(len(english))], "split": split,
                  "pivot_text": english, "target_text": TARGETS[lang][: len(english)]}).write_parquet(path)  # fmt: skip
    return path


def stored_arrays(directory):
    names = [f"{name}{suffix}" for name in (*STATE_ARRAYS, *EXTRA_STATES) for suffix in ("", ".scale")]
    return {name: np.load(directory / f"{name}.npy") for name in [*names, "write_scale"]}


def pivot_dump_of(manifest, corpora, directory):
    dump_pivot_split(manifest, corpora, "train", directory / "en", directory / "en.sentences.parquet", **DUMP_SETTINGS)
    return directory / "en", directory / "en.sentences.parquet"


def test_parallel_corpora_get_their_english_states_bit_for_bit(manifest, tmp_path):
    corpora = [write_corpus(tmp_path / f"{lang}.parquet", lang, ENGLISH) for lang in TARGETS]
    pivot = pivot_dump_of(manifest, corpora, tmp_path)
    dump_split(manifest, corpora[0], "train", tmp_path / "alone", tmp_path / "alone.pairs.parquet", **DUMP_SETTINGS)
    dump_split(manifest, corpora[0], "train", tmp_path / "copied", tmp_path / "copied.pairs.parquet",
               pivot_dump=pivot, **DUMP_SETTINGS)  # fmt: skip
    alone, copied = stored_arrays(tmp_path / "alone" / "pivot"), stored_arrays(tmp_path / "copied" / "pivot")
    for name, values in alone.items():
        assert np.array_equal(copied[name], values), name
    for name, values in stored_arrays(tmp_path / "alone" / "target").items():  # the L2 side is dumped as before
        assert np.array_equal(stored_arrays(tmp_path / "copied" / "target")[name], values), name
    assert json.loads((tmp_path / "copied" / "pivot" / "meta.json").read_text())["n_sentences"] == len(ENGLISH)


def test_each_language_gets_its_own_english_rows_in_its_order(manifest, tmp_path):
    ja = write_corpus(tmp_path / "ja.parquet", "ja", ENGLISH[:3])
    nl = write_corpus(tmp_path / "nl.parquet", "nl", ENGLISH[::-1])  # other order, two more sentences
    pivot = pivot_dump_of(manifest, [ja, nl], tmp_path)
    assert pl.read_parquet(pivot[1])["pivot_text"].to_list() == [*ENGLISH[:3], ENGLISH[4], ENGLISH[3]]
    dump_split(manifest, nl, "train", tmp_path / "nl", tmp_path / "nl.pairs.parquet", pivot_dump=pivot,
               **DUMP_SETTINGS)  # fmt: skip
    dump_split(manifest, nl, "train", tmp_path / "alone", tmp_path / "alone.pairs.parquet", **DUMP_SETTINGS)
    copied, alone = Dump(tmp_path / "nl" / "pivot"), Dump(tmp_path / "alone" / "pivot")
    for name in STATE_ARRAYS:
        # other batch-mates than in a dump of its own: the same states up to float16 storage and padding
        expected = alone.all_layers(name)
        np.testing.assert_allclose(copied.all_layers(name), expected, rtol=0, atol=2e-3 * np.abs(expected).max())
    np.testing.assert_allclose(copied.extra_state("final_normed"), alone.extra_state("final_normed"), rtol=2e-3,
                               atol=2e-3)  # fmt: skip


def test_a_pivot_dump_of_other_corpora_names_the_missing_sentence(manifest, tmp_path):
    ja = write_corpus(tmp_path / "ja.parquet", "ja", ENGLISH[:2])
    nl = write_corpus(tmp_path / "nl.parquet", "nl", ENGLISH[:3])
    pivot = pivot_dump_of(manifest, [ja], tmp_path)
    with pytest.raises(ValueError, match=r"en\.sentences\.parquet: the pivot dump lacks 1 of .*'I like green tea"):
        dump_split(manifest, nl, "train", tmp_path / "nl", tmp_path / "nl.pairs.parquet", pivot_dump=pivot,
                   **DUMP_SETTINGS)  # fmt: skip
    assert not (tmp_path / "nl.pairs.parquet").exists()


def test_copied_sides_have_no_counts_and_english_lape_counts_each_sentence_once(manifest, tmp_path):
    corpora = {lang: write_corpus(tmp_path / f"{lang}.parquet", lang, ENGLISH) for lang in TARGETS}
    pivot = pivot_dump_of(manifest, list(corpora.values()), tmp_path)
    copied, alone = {}, {}
    for lang, corpus in corpora.items():
        for name, chosen, kwargs in (("copied", copied, {"pivot_dump": pivot}), ("alone", alone, {})):
            directory = tmp_path / name / lang
            dump_split(manifest, corpus, "train", directory, directory.with_suffix(".pairs.parquet"), **kwargs,
                       **DUMP_SETTINGS)  # fmt: skip
            chosen[lang] = directory
    with pytest.raises(ValueError, match=r"copied from the dump .*/en and no activation counts"):
        Dump(copied["ja"] / "pivot").active_counts()
    once = language_activity(copied, "en", pivot[0])
    summed = language_activity(alone, "en")  # every language's English side counted: twice each here
    assert once[0] == summed[0] == ["en", "ja", "nl"]
    assert np.array_equal(once[1][0] * 2, summed[1][0]) and once[2][0] * 2 == summed[2][0]
    assert np.array_equal(once[1][1:], summed[1][1:])
    np.testing.assert_array_equal(activation_probabilities(*once[1:]), activation_probabilities(*summed[1:]))


def test_distinct_pivot_sentences_keep_the_first_seen_order():
    frames = [pl.DataFrame({"split": "test", "pivot_text": texts}) for texts in (["b", "a"], ["a", "c", "b"])]
    assert distinct_pivot_sentences(frames, "test") == ["b", "a", "c"]


def test_pivot_rows_map_repeated_sentences_to_one_row(tmp_path):
    path = tmp_path / "sentences.parquet"
    pl.DataFrame({"row": [0, 1], "pivot_text": ["x", "y"]}).write_parquet(path)
    assert pivot_rows(["y", "x", "y"], path) == [1, 0, 1]

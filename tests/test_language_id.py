"""Language identification of short answers (evaluation.language_id) and the answer language shares."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from transfer_neurons.data.languages import UnknownLanguageError
from transfer_neurons.evaluation.language_id import (
    ANSWER_LANGUAGE_CLASSES,
    IDENTIFIABLE,
    LanguageIdentifier,
    answer_language_class,
    answer_language_shares,
    answer_letters,
)
from transfer_neurons.evaluation.statistics import bootstrap_mean_ci

OUR_LANGUAGES = ["en", "ja", "ko", "zh", "nl", "it", "de", "es", "ru", "ar", "hi", "th", "vi"]

# Short answer-like phrases, 2 to 6 words, that the identifier must name right.
PHRASES = {
    "en": ["in the northern hemisphere", "about two hundred bones", "it is a bird"],
    "nl": ["de hoofdstad van Nederland", "ongeveer acht uur", "het is een vogel"],
    "it": ["la capitale della Francia", "circa otto ore", "è un uccello"],
    "de": ["die Hauptstadt von Frankreich", "ungefähr acht Stunden", "es ist ein Vogel"],
    "es": ["unas ocho horas", "es un pájaro", "el río más largo"],
    "vi": ["thủ đô của nước Pháp", "khoảng tám giờ", "đó là một con chim"],
    "ja": ["フランスの首都です", "約八時間です", "それは鳥です"],
    "zh": ["法国的首都是巴黎", "大约八个小时", "这是一只鸟"],
    "ko": ["프랑스의 수도입니다", "약 여덟 시간", "그것은 새입니다"],
    "ru": ["столица Франции", "около восьми часов", "это птица"],
    "ar": ["عاصمة فرنسا", "حوالي ثماني ساعات", "إنه طائر"],
    "hi": ["फ्रांस की राजधानी", "लगभग आठ घंटे", "यह एक पक्षी है"],
    "th": ["เมืองหลวงของฝรั่งเศส", "ประมาณแปดชั่วโมง", "มันคือนก"],
}
ONE_WORD = {
    "en": "Wednesday",
    "vi": "bướm",
    "ja": "アムステルダム",
    "ko": "서울",
    "ru": "Москва",
    "ar": "القاهرة",
    "hi": "तितली",
    "th": "ผีเสื้อ",
}
# One word of a script several candidates share: right or unidentified, never another language.
SHARED_SCRIPT_WORDS = {
    "en": ["butterfly", "the Pacific Ocean"],
    "nl": ["vlinder", "woensdag"],
    "it": ["farfalla", "mercoledì"],
    "de": ["Schmetterling", "Mittwoch"],
    "es": ["mariposa", "miércoles", "la capital de Francia"],
    "ja": ["水曜日"],
    "zh": ["蝴蝶", "星期三"],
}


@pytest.fixture(scope="module")
def identifier() -> LanguageIdentifier:
    return LanguageIdentifier(OUR_LANGUAGES)


@pytest.mark.parametrize("lang", OUR_LANGUAGES)
def test_phrases_are_identified(identifier, lang):
    assert [identifier.identify(text) for text in PHRASES[lang]] == [lang] * len(PHRASES[lang])


@pytest.mark.parametrize("lang", sorted(ONE_WORD))
def test_one_word_answers_are_identified(identifier, lang):
    assert identifier.identify(ONE_WORD[lang]) == lang


@pytest.mark.parametrize("lang", sorted(SHARED_SCRIPT_WORDS))
def test_shared_script_words_are_right_or_unidentified(identifier, lang):
    for text in SHARED_SCRIPT_WORDS[lang]:
        assert identifier.identify(text) in (lang, None), text


@pytest.mark.parametrize("text", ["", "1969", "?!", "  ", "100 °C", "٨", "C", "Paris", "Berlin", "Tokyo", "東京"])
def test_too_short_or_ambiguous_is_unidentified(identifier, text):
    assert identifier.identify(text) is None


def test_script_decides_when_one_candidate_writes_it(identifier):
    assert identifier.identify("1969년") == "ko"  # one Hangul letter
    assert identifier.identify("Αθήνα") is None  # no candidate writes Greek
    # Han alone is Chinese when Japanese is not a candidate; Hangul is nobody's without Korean.
    english_chinese = LanguageIdentifier(["en", "zh"])
    assert english_chinese.identify("東京") == "zh"
    assert english_chinese.identify("서울") is None


def test_kana_makes_han_text_japanese(identifier):
    assert identifier.identify("東京です") == "ja"


def test_identify_all_keeps_order(identifier):
    texts = ["それは鳥です", "", "it is a bird", "это птица", "Paris"]
    assert identifier.identify_all(texts) == ["ja", None, "en", "ru", None]
    assert identifier.identify_all(iter(texts)) == [identifier.identify(text) for text in texts]


def test_letters_drop_digits_punctuation_and_marks():
    assert answer_letters(" 1969 年！") == "年"
    assert answer_letters("H₂O") == "HO"
    assert answer_letters("สี่") == "ส"  # Thai vowel and tone marks are not letters


def test_bad_arguments_are_named():
    with pytest.raises(UnknownLanguageError, match="xx"):
        LanguageIdentifier(["en", "xx"])
    with pytest.raises(ValueError, match="min_confidence"):
        LanguageIdentifier(["en"], min_confidence=1.5)
    with pytest.raises(ValueError, match="min_chars"):
        LanguageIdentifier(["en"], min_chars=0)


def test_every_language_has_a_library_code():
    from transfer_neurons.data.languages import LANGUAGES

    assert set(IDENTIFIABLE) == set(LANGUAGES)


def test_english_answer_to_a_japanese_question_is_english(identifier):
    identified = identifier.identify("It has eight legs.")  # to "クモの脚は何本ですか？"
    assert identified == "en"
    assert answer_language_class(identified, "ja") == "english"


def test_answer_language_class():
    assert answer_language_class("ja", "ja") == "question_language"
    assert answer_language_class("zh", "ja") == "other"
    assert answer_language_class(None, "ja") == "unidentified"
    assert answer_language_class("en", "en") == "question_language"  # an English question
    assert answer_language_class("en", "ja", pivot="de") == "other"
    assert answer_language_class("de", "ja", pivot="de") == "english"  # the pivot's class


def share_table() -> pl.DataFrame:
    """ja/normal: q1, q2 own language, q3 English, q4 unidentified; ja/type1: q1 other, q2 English;
    nl/normal: q1 own language. Rows shuffled."""
    rows = [
        ("ja", "type1", "prompt", "q2", "english"),
        ("nl", "normal", "prompt", "q1", "question_language"),
        ("ja", "normal", "prompt", "q4", "unidentified"),
        ("ja", "normal", "prompt", "q1", "question_language"),
        ("ja", "type1", "prompt", "q1", "other"),
        ("ja", "normal", "prompt", "q3", "english"),
        ("ja", "normal", "prompt", "q2", "question_language"),
    ]
    columns = ["language", "condition", "positions", "example_id", "answer_language_class"]
    return pl.DataFrame(rows, schema=columns, orient="row")


def test_shares_by_hand():
    shares = answer_language_shares(share_table(), resamples=200, seed=3)
    assert shares.columns == ["language", "condition", "positions", "answer_language_class", "share", "ci_low",
                              "ci_high", "n"]  # fmt: skip
    groups = [("ja", "normal"), ("ja", "type1"), ("nl", "normal")]
    expected_keys = [(lang, condition, answer_class) for lang, condition in groups for answer_class in
                     ANSWER_LANGUAGE_CLASSES]  # fmt: skip
    assert list(zip(shares["language"], shares["condition"], shares["answer_language_class"], strict=True)) == (
        expected_keys
    )
    assert shares["share"].to_list() == [0.5, 0.25, 0.0, 0.25, 0.0, 0.5, 0.5, 0.0, 1.0, 0.0, 0.0, 0.0]
    assert shares["n"].to_list() == [4] * 4 + [2] * 4 + [1] * 4
    sums = shares.group_by("language", "condition").agg(pl.col("share").sum())
    assert np.allclose(sums["share"].to_numpy(), 1.0)
    # Unidentified is a class of its own: the ja/normal question q4 counts there and nowhere else.
    unidentified = shares.filter(pl.col("answer_language_class") == "unidentified")
    assert unidentified["share"].to_list() == [0.25, 0.0, 0.0]


def test_share_intervals_resample_questions_sorted_by_id():
    shares = answer_language_shares(share_table(), resamples=200, seed=3)
    own = shares.row(0, named=True)  # ja/normal/question_language; q1..q4 -> 1, 1, 0, 0
    assert (own["ci_low"], own["ci_high"]) == bootstrap_mean_ci(np.array([1.0, 1.0, 0.0, 0.0]), 200, 3)[1:]
    assert own["ci_low"] < own["share"] < own["ci_high"]
    other = shares.row(2, named=True)  # no answer of this class: the interval is a point at 0
    assert (other["share"], other["ci_low"], other["ci_high"]) == (0.0, 0.0, 0.0)


def test_share_table_errors_name_the_problem():
    table = share_table()
    with pytest.raises(ValueError, match="example_id"):
        answer_language_shares(table.drop("example_id"), resamples=10)
    with pytest.raises(ValueError, match="french"):
        answer_language_shares(table.with_columns(answer_language_class=pl.lit("french")), resamples=10)
    with pytest.raises(ValueError, match="2 rows for one question"):
        answer_language_shares(pl.concat([table, table.head(1)]), resamples=10)

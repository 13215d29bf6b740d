"""MKQA's reference scoring (apple/ml-mkqa), as re-implemented in transfer_neurons.evaluation.mkqa_scoring.

Each case gives the tokens both sides normalise to and the EM / F1 worked out by
hand: F1 = 2PR / (P + R) with P = common / len(pred), R = common / len(gold).
"""

import pytest

from transfer_neurons.data.qa import gold_texts, is_answerable
from transfer_neurons.evaluation.mkqa_scoring import (
    MKQA_LANGUAGES,
    answer_tokens,
    best_em_f1,
    mkqa_em,
    mkqa_f1,
)

# (lang, prediction, gold, expected EM, expected F1)
CASES = [
    # --- ASCII punctuation is deleted, not replaced by a space ---
    # ["blauwwit"] vs ["blauw", "wit"]: nothing in common -> F1 0
    ("nl", "blauw-wit", "blauw wit", 0.0, 0.0),
    # ["blauwwit"] vs ["blauwwit"]
    ("nl", "blauw-wit", "Blauwwit", 1.0, 1.0),
    # ["beatles"] vs ["beatles"]: "the" is an article, "!" deleted
    ("en", "The Beatles!", "beatles", 1.0, 1.0),
    # --- non-ASCII punctuation is kept ---
    # ["paris？"] vs ["paris"]: the full-width "？" stays glued to the word
    ("en", "Paris？", "Paris", 0.0, 0.0),
    # zh_cn: 北 京 。 vs 北 京; P = 2/3, R = 1 -> F1 = (4/3) / (5/3) = 0.8
    ("zh_cn", "北京。", "北京", 0.0, 0.8),
    # 北 京 ， 中 国 ？ vs 北 京 中 国 (ASCII "," and "?" deleted); P = 4/6, R = 1 -> F1 = 0.8
    ("zh_cn", "北京，中国？", "北京,中国?", 0.0, 0.8),
    # ja: 「 東 京 」 vs 東 京; P = 2/4, R = 1 -> F1 = 1 / 1.5 = 2/3
    ("ja", "「東京」", "東京", 0.0, 2 / 3),
    # ja: the katakana middle dot ・ is a token: 9 tokens vs 8, all 8 shared; P = 8/9, R = 1 -> 16/17
    ("ja", "リドリー・スコット", "リドリー スコット", 0.0, 16 / 17),
    # --- articles with word boundaries on both sides ---
    # ["theory"] vs ["theory"]: only the whole word "the" goes
    ("en", "the theory", "theory", 1.0, 1.0),
    # ["derzeit"] vs ["zeit"]: German "der" must be a whole word
    ("de", "derzeit", "zeit", 0.0, 0.0),
    # ["rode", "duivels"] both
    ("nl", "de Rode Duivels", "Rode Duivels", 1.0, 1.0),
    # ["casa"] both; ["unanimidad"] keeps its "un"
    ("es", "la casa", "casa", 1.0, 1.0),
    ("es", "unanimidad", "animidad", 0.0, 0.0),
    ("pt", "o Rio", "rio", 1.0, 1.0),
    ("hu", "az alma", "alma", 1.0, 1.0),
    ("vi", "của tôi", "tôi", 1.0, 1.0),
    ("sv", "en bil", "bil", 1.0, 1.0),
    # --- French / Italian regexes lack the closing boundary: they strip word prefixes ---
    # "les" -> "le" is tried first -> " s": ["s", "misérables"] vs ["misérables"]; P = 1/2, R = 1 -> 2/3
    ("fr", "les misérables", "misérables", 0.0, 2 / 3),
    # "dessert" -> "de" stripped -> ["ssert"]
    ("fr", "dessert", "ssert", 1.0, 1.0),
    # "l'eau" -> "leau" (apostrophe deleted first) -> "le" stripped -> ["au"] vs ["eau"]
    ("fr", "l'eau", "eau", 0.0, 0.0),
    ("fr", "l'eau", "au", 1.0, 1.0),
    # Italian "i" strips the first letter of any word starting with i: ["nverno"] both
    ("it", "inverno", "nverno", 1.0, 1.0),
    # "dello stato" -> "del" stripped, the rest "lo" is mid-word so stays: ["lo", "stato"];
    # "lo stato" -> ["stato"]; P = 1/2, R = 1 -> 2/3
    ("it", "dello stato", "lo stato", 0.0, 2 / 3),
    # Arabic "ال" is removed anywhere, even inside a word: "مالك" -> ["م", "ك"]
    ("ar", "مالك", "م ك", 1.0, 1.0),
    # ["تفاحة"] both
    ("ar", "التفاحة", "تفاحة", 1.0, 1.0),
    # --- no Unicode folding: only str.lower() ---
    # ["strasse"] vs ["straße"]
    ("de", "STRASSE", "straße", 0.0, 0.0),
    # --- segmentation ---
    # Korean is split on whitespace, not into characters: ["서울특별시"] vs ["서울"]
    ("ko", "서울특별시", "서울", 0.0, 0.0),
    # ["서울", "특별시"] vs ["서울"]; P = 1/2, R = 1 -> 2/3
    ("ko", "서울 특별시", "서울", 0.0, 2 / 3),
    # th: 7 code points (vowel mark ุ included), all in the 13 of the gold; P = 1, R = 7/13 -> 14/20
    ("th", "กรุงเทพ", "กรุงเทพมหานคร", 0.0, 0.7),
    # km: 15 code points, all among the gold's 21; P = 1, R = 15/21 -> 30/36
    ("km", "នេះគឺជាផ្លែប៉ោម", "នេះគឺជាផ្លែប៉ោមមួយទៀត", 0.0, 5 / 6),
    # zh_hk / zh_tw segment too: 臺 灣 vs 臺 灣 省; P = 1, R = 2/3 -> 0.8
    ("zh_tw", "臺灣", "臺灣省", 0.0, 0.8),
    ("zh_hk", "香港", "香港", 1.0, 1.0),
    # --- mixed scripts ---
    # zh_cn splits Latin words and digits into characters too, spaces vanish: i p h o n e 1 2 both
    ("zh_cn", "iPhone 12", "iphone12", 1.0, 1.0),
    # en keeps words: ["iphone", "12"] vs ["iphone12"]
    ("en", "iPhone 12", "iphone12", 0.0, 0.0),
    # en: ["東京", "tower"] vs ["東京"]; P = 1/2, R = 1 -> 2/3
    ("en", "東京 Tower", "東京", 0.0, 2 / 3),
    # ja: 東 京 t o w e r vs 東 京; P = 2/7, R = 1 -> (4/7) / (9/7) = 4/9
    ("ja", "東京tower", "東京", 0.0, 4 / 9),
    # --- numbers ---
    # ["1000"] both
    ("en", "1,000", "1000", 1.0, 1.0),
    # ["35", "million"] both: "." and "," deleted
    ("en", "3.5 million", "3,5 million", 1.0, 1.0),
    # ["20170518"] vs ["18", "may", "2017"]
    ("en", "2017-05-18", "18 May 2017", 0.0, 0.0),
    # 2 0 1 7 年 vs 2 0 1 7; P = 4/5, R = 1 -> 1.6 / 1.8 = 8/9
    ("zh_cn", "2017年", "2017", 0.0, 8 / 9),
    # repeated tokens count once each: 2 0 0 0 vs 2 0 -> common 2; P = 2/4, R = 1 -> 2/3
    ("zh_cn", "2000", "20", 0.0, 2 / 3),
    # ["new", "new", "york"] vs ["new", "york"]: common 2; P = 2/3, R = 1 -> 0.8
    ("en", "new new york", "New York", 0.0, 0.8),
    # --- empty texts: no tokens on a side -> 1 if both have none, else 0 ---
    ("en", "", "", 1.0, 1.0),
    ("en", "", "Paris", 0.0, 0.0),
    ("en", "Paris", "", 0.0, 0.0),
    # only punctuation or only an article also normalise to no tokens
    ("en", "?!", "", 1.0, 1.0),
    ("en", "", "The", 1.0, 1.0),
    ("ja", " ", "", 1.0, 1.0),
    # tab and ideographic space U+3000 separate words too: ["가", "나", "다"] both
    ("ko", "가\t나\u3000다", "가 나 다", 1.0, 1.0),
    # --- a code MKQA lacks: no articles, whitespace tokens (not character tokens) ---
    # "zh" is not MKQA's code: ["北京"] vs ["北京市"]
    ("zh", "北京", "北京市", 0.0, 0.0),
    # "EN" is not "en": "the" is kept; ["the", "beatles"] vs ["beatles"]; P = 1/2, R = 1 -> 2/3
    ("EN", "The Beatles", "Beatles", 0.0, 2 / 3),
]


@pytest.mark.parametrize(("lang", "prediction", "gold", "em", "f1"), CASES)
def test_em_and_f1_match_hand_computed_values(lang, prediction, gold, em, f1):
    assert mkqa_em(prediction, gold, lang) == em
    assert mkqa_f1(prediction, gold, lang) == pytest.approx(f1)


@pytest.mark.parametrize(
    ("text", "lang", "tokens"),
    [
        ("Blauw-Wit", "nl", ["blauwwit"]),
        ("les misérables", "fr", ["s", "misérables"]),
        ("dello stato", "it", ["lo", "stato"]),
        ("「東京」", "ja", ["「", "東", "京", "」"]),
        ("東京 Tower", "en", ["東京", "tower"]),
        ("a b\u3000c", "zh_cn", ["a", "b", "c"]),
        ("서울 특별시", "ko", ["서울", "특별시"]),
        ("The X", "xx", ["the", "x"]),
    ],
)
def test_answer_tokens(text, lang, tokens):
    assert answer_tokens(text, lang) == tokens


def test_languages_are_mkqas_own_codes():
    assert len(MKQA_LANGUAGES) == 26
    assert {"zh_cn", "zh_hk", "zh_tw", "km", "ko", "he", "ms", "no"} <= set(MKQA_LANGUAGES)
    assert "zh" not in MKQA_LANGUAGES


def test_best_takes_each_maximum_over_golds():
    # "paris" vs ["paris", "france"]: P = 1, R = 1/2 -> 2/3; vs "Paris.": exact
    assert best_em_f1("Paris", ["Paris, France", "Paris."], "en") == (1.0, 1.0)
    # best F1 2/3 from the first gold, EM 0 from both
    assert best_em_f1("Paris", ["Paris, France", "Lyon"], "en") == (0.0, pytest.approx(2 / 3))
    # an unanswerable question's golds are [""]: only an empty prediction scores
    assert best_em_f1("", [""], "en") == (1.0, 1.0)
    assert best_em_f1("Paris", [""], "en") == (0.0, 0.0)
    # a "" gold next to real answers still rewards an empty prediction
    assert best_em_f1("", ["Paris", ""], "en") == (1.0, 1.0)


def test_best_refuses_an_empty_gold_list():
    with pytest.raises(ValueError):
        best_em_f1("Paris", [], "en")


RECORD_ANSWERS = {
    # entity with aliases: text first, then aliases
    "entity": (
        [{"type": "entity", "entity": "Q56005", "text": "Ridley Scott", "aliases": ["Sir Ridley Scott"]}],
        ["Ridley Scott", "Sir Ridley Scott"],
    ),
    # entity without an "aliases" key
    "entity_no_aliases": (
        [{"type": "entity", "text": "ريدلي سكوت", "entity": "Q56005"}],
        ["ريدلي سكوت"],
    ),
    # text None means No Answer, scored as ""
    "unanswerable": ([{"type": "unanswerable", "text": None}], [""]),
    "long_answer": ([{"type": "long_answer", "text": None}], [""]),
    # binary answers are scored through their text
    "binary": ([{"type": "binary", "text": "yes"}], ["yes"]),
    # number with aliases; the duplicate "6" is kept once
    "number": ([{"type": "number", "text": "6", "aliases": ["six", "6"]}], ["6", "six"]),
    # two answers of one question, duplicates across them dropped
    "dates": (
        [
            {"type": "date", "text": "2017", "aliases": ["2017"]},
            {"type": "date", "text": "2017-05-18", "aliases": ["2017-05-18", "18 May 2017"]},
        ],
        ["2017", "2017-05-18", "18 May 2017"],
    ),
    # a None text among real answers adds "" to the golds
    "mixed": (
        [{"type": "short_phrase", "text": "in spring", "aliases": []}, {"type": "long_answer", "text": None}],
        ["in spring", ""],
    ),
}


@pytest.mark.parametrize("kind", sorted(RECORD_ANSWERS))
def test_gold_texts_from_mkqa_records(kind):
    answers, expected = RECORD_ANSWERS[kind]
    assert gold_texts(answers) == expected


def test_answerability_and_scoring_from_records():
    record = {
        "example_id": 2904274678882358283,
        "query": "how many",
        "queries": {"en": "how many", "ja": "いくつ"},
        "answers": {
            "en": [{"type": "number", "text": "6", "aliases": ["six"]}],
            "ja": [{"type": "unanswerable", "text": None}],
        },
    }
    en_golds, ja_golds = gold_texts(record["answers"]["en"]), gold_texts(record["answers"]["ja"])
    assert is_answerable(en_golds) and not is_answerable(ja_golds)
    no_answer = [{"type": "unanswerable", "text": None}, {"type": "long_answer", "text": None}]
    assert not is_answerable(gold_texts(no_answer))
    assert best_em_f1("Six.", en_golds, "en") == (1.0, 1.0)
    assert best_em_f1("", ja_golds, "ja") == (1.0, 1.0)
    assert best_em_f1("6", ja_golds, "ja") == (0.0, 0.0)

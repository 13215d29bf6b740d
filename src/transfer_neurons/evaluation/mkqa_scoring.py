"""MKQA's official answer scoring (exact match and token F1), re-implemented.

Reproduces the behaviour of the reference scorer in github.com/apple/ml-mkqa:
answer normalisation and the EM / F1 metrics of ``mkqa_eval_util.py``. How
``mkqa_eval.py`` turns one language's answer objects into gold strings is
``data.qa.gold_texts``. Standard library only.

Normalisation of a text for a language, in this order:

1. ``str.lower()`` (no Unicode normalisation, no case folding);
2. delete (not replace by a space) every ASCII punctuation character,
   ``string.punctuation``; other punctuation (``，。？「」`` ...) stays;
3. replace each match of the language's article regex by a space; some of the
   reference's regexes have no closing ``\\b``, so they strip word *prefixes*
   (see ``_ARTICLE_PATTERNS``);
4. tokenise: zh_cn, zh_hk, zh_tw, ja, th and km give one token per non-space
   code point (Latin words and digits included); every other language,
   including codes MKQA lacks, splits on whitespace.

A language code MKQA lacks (or spelled differently, e.g. ``zh`` or ``EN``) gets
the reference's default: no article removal and whitespace tokens.
"""

from __future__ import annotations

import re
import string
from collections import Counter

MKQA_LANGUAGES: tuple[str, ...] = (
    "ar", "da", "de", "en", "es", "fi", "fr", "he", "hu", "it", "ja", "km", "ko",
    "ms", "nl", "no", "pl", "pt", "ru", "sv", "th", "tr", "vi", "zh_cn", "zh_hk", "zh_tw",
)  # fmt: skip

# Scripts without spaces between words: the reference scores them per character.
# Korean is written with spaces and is not among them.
CHARACTER_SEGMENTED_LANGUAGES: frozenset[str] = frozenset({"zh_cn", "zh_hk", "zh_tw", "ja", "th", "km"})

# Only ASCII punctuation is removed, and removed without leaving a space:
# "blauw-wit" is one token "blauwwit", while "，" survives (and is a token in zh/ja).
_ASCII_PUNCTUATION_DELETION = str.maketrans("", "", string.punctuation)


def _word_start_pattern(alternatives: tuple[str, ...], whole_word: bool) -> re.Pattern[str]:
    """Alternatives that must start at a word boundary, tried in the given order.

    Without ``whole_word`` there is no boundary at the end, so the first listed
    alternative that is a prefix of a word wins and only that prefix is removed.
    """
    group = "|".join(re.escape(word) for word in alternatives)
    return re.compile(rf"\b(?:{group})" + (r"\b" if whole_word else ""))


# Tried in this order, with no closing boundary: "del" shadows "dello", "della" and
# "delle", and "i" strips the first letter of any word that starts with "i" but not "il".
_ITALIAN_ARTICLES = (
    "il", "lo", "la", "l'", "i", "gli", "le", "del", "dello", "della", "dell'", "dei", "degli", "degl'", "delle",
    "un'", "uno", "una", "un",
)  # fmt: skip

# Languages that are absent here keep their articles. Order matters only for the
# prefix patterns (fr, it): e.g. French "les" loses just "le" (-> " s") because
# "le" is tried first; "l'"/"d'"/"un'"/... can never match, as the apostrophe
# has already been deleted with the other ASCII punctuation.
_ARTICLE_PATTERNS: dict[str, re.Pattern[str]] = {
    "en": _word_start_pattern(("a", "an", "the"), whole_word=True),
    "es": _word_start_pattern(("un", "una", "unos", "unas", "el", "la", "los", "las"), whole_word=True),
    "vi": _word_start_pattern(("của", "là", "cái", "chiếc", "những"), whole_word=True),
    "de": _word_start_pattern(
        ("ein", "eine", "einen", "einem", "eines", "einer", "der", "die", "das", "den", "dem", "des"), whole_word=True
    ),
    "nl": _word_start_pattern(("de", "het", "een", "des", "der", "den"), whole_word=True),
    "sv": _word_start_pattern(("en", "ett"), whole_word=True),
    "da": _word_start_pattern(("en", "et"), whole_word=True),
    "no": _word_start_pattern(("en", "et", "ei"), whole_word=True),
    "fr": _word_start_pattern(("le", "la", "l'", "les", "du", "de", "d'", "des", "un", "une", "des"), whole_word=False),
    "pt": _word_start_pattern(("o", "a", "os", "as", "um", "uma", "uns", "umas"), whole_word=True),
    "it": _word_start_pattern(_ITALIAN_ARTICLES, whole_word=False),
    "fi": _word_start_pattern(("se", "yks", "yksi"), whole_word=True),
    "hu": _word_start_pattern(("a", "az", "egy"), whole_word=True),
    # The reference's Arabic regex has a first alternative ending in "^" after
    # other characters, which can never match; what remains removes the
    # definite article "ال" anywhere, even inside words, with no boundary at all.
    "ar": re.compile("ال"),
}


def _remove_articles(text: str, lang: str) -> str:
    pattern = _ARTICLE_PATTERNS.get(lang)
    return pattern.sub(" ", text) if pattern else text


def _tokenize(text: str, lang: str) -> list[str]:
    if lang in CHARACTER_SEGMENTED_LANGUAGES:
        return [char for char in text if not char.isspace()]
    return text.split()


def answer_tokens(text: str, lang: str) -> list[str]:
    """The tokens MKQA's scorer compares for ``text`` in language ``lang``."""
    without_punctuation = text.lower().translate(_ASCII_PUNCTUATION_DELETION)
    return _tokenize(_remove_articles(without_punctuation, lang), lang)


def mkqa_em(prediction: str, gold: str, lang: str) -> float:
    """1.0 when both normalise to the same tokens (two empty texts match), else 0.0."""
    return float(answer_tokens(prediction, lang) == answer_tokens(gold, lang))


def mkqa_f1(prediction: str, gold: str, lang: str) -> float:
    """Harmonic mean of token precision and recall, counting repeated tokens.

    If either side has no tokens (empty text, only punctuation or articles), the
    score is 1.0 when both have none and 0.0 otherwise.
    """
    predicted, expected = answer_tokens(prediction, lang), answer_tokens(gold, lang)
    if not predicted or not expected:
        return float(predicted == expected)
    common = sum((Counter(predicted) & Counter(expected)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)


def best_em_f1(prediction: str, golds: list[str], lang: str) -> tuple[float, float]:
    """(EM, F1), each maximised separately over ``golds``: the two maxima may
    come from different gold texts.

    The reference refuses an empty gold list (it asserts); so does this, with
    ValueError. An unanswerable question has the gold list ``[""]`` instead.
    """
    if not golds:
        raise ValueError("MKQA scoring needs at least one gold text; unanswerable questions use [''].")
    best_em = max(mkqa_em(prediction, gold, lang) for gold in golds)
    best_f1 = max(mkqa_f1(prediction, gold, lang) for gold in golds)
    return best_em, best_f1

"""QA answer scoring: MKQA-style answer normalisation and token F1.

F1 is token overlap after MKQA-style normalisation (lower case, punctuation removed,
articles removed for languages that have them, character tokens for ja/zh/th),
maximised over every gold text and alias.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter

from transfer_neurons.data.languages import language
from transfer_neurons.data.qa import gold_texts

EXTRA_PUNCTUATION = "「」『』（）、。！？：；・〜《》〈〉【】“”‘’«»…"


def _strip_punctuation(text: str) -> str:
    return "".join(
        " " if (char in string.punctuation or char in EXTRA_PUNCTUATION or unicodedata.category(char).startswith("P"))
        else char
        for char in text
    )  # fmt: skip


def normalize_answer(text: str, lang: str) -> list[str]:
    """Tokens of ``text`` after MKQA-style normalisation for ``lang``."""
    info = language(lang)
    text = unicodedata.normalize("NFKC", text).lower()
    text = _strip_punctuation(text)
    if info.articles:
        text = re.sub(r"\b(" + "|".join(map(re.escape, info.articles)) + r")\b", " ", text)
    if info.character_tokens:
        return [char for char in text if not char.isspace()]
    return text.split()


def token_f1(prediction: str, gold: str, lang: str) -> float:
    predicted, expected = normalize_answer(prediction, lang), normalize_answer(gold, lang)
    if not predicted or not expected:
        return float(predicted == expected)
    common = sum((Counter(predicted) & Counter(expected)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)


def best_f1(prediction: str, answers: list[dict], lang: str) -> float:
    """Max F1 over every gold answer and alias."""
    return max((token_f1(prediction, gold, lang) for gold in gold_texts(answers)), default=0.0)

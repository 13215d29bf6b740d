"""The language of short generated answers, and each language's share of a condition's answers.

``LanguageIdentifier.identify`` names which candidate language a text is written in, or ``None``
when the text cannot tell (unidentified): it never guesses. A text is decided in three steps:

1. Letters only: after NFKC normalisation, digits, punctuation, symbols, marks and spaces are
   dropped. No letter left ("", "1969", "?!") is unidentified.
2. Script: each letter's Unicode script; the plausible languages are the candidates whose scripts
   cover the most letters. One plausible language decides from a single letter on (Hangul:
   Korean, so "1969년"; kana: Japanese; Cyrillic: Russian among our candidates); none (Greek,
   say) is unidentified.
3. Several plausible languages (the Latin-script ones; Japanese and Chinese for Han characters
   alone): the text needs ``min_chars`` letters, and py3langid's probabilities, renormalised over
   the plausible languages, must reach ``min_confidence``. Below either bar nothing tells the
   languages apart ("Paris", "東京", "100 °C"), and the text is unidentified.

Both bars come from the built-in MKQA strings (data/qa/builtin_mkqa.jsonl: every gold text,
alias and question in our 13 languages, 6,808 strings; issue 24 compares py3langid with lingua).
On the 3,139 gold answers whose text belongs to one language only, ``min_confidence = 0.8``
identifies 77 %, 99.6 % of them right and at least 95 % right in every language, and calls no
non-English one English. At 0.7 Japanese answers in Han characters alone ("東京都", "銀河系")
become Chinese (Japanese 89 % right); at 0.9 almost every English, Italian or Dutch
answer is unidentified (3 %, 8 %, 14 % identified). Gold answers shared by several languages
("Paris" as a German answer) are 7 % identified; questions are 100 % identified and right. Put
in short sentences ("The answer is X.", "答えはXです。": two each in en, nl, it, de, es, vi, ja,
zh; 5,406 strings), 86 % are identified, 99.6 % right, but English only 48 % (98 % right; 68 % at
0.7): a short English answer full of names is often unidentified rather than called English.
``min_chars = 2``: we decide nothing on one letter of a shared script. At 1, 18 single letters
would pass the 0.8 bar: 14 Chinese answers, right, and 4 Han characters that are gold answers in
both Japanese and Chinese ("黄"), all called Chinese.

py3langid (a fork of langid.py: naive Bayes over byte n-grams, 140 languages) ships its model
inside the wheel, so identification never touches a network. It has no batch call:
``identify_all`` loops, about 0.05 ms a text on one core.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import polars as pl
from py3langid.langid import MODEL_FILE
from py3langid.langid import LanguageIdentifier as Py3LangidIdentifier

from transfer_neurons.data.languages import language
from transfer_neurons.evaluation.statistics import bootstrap_mean_ci

if TYPE_CHECKING:
    from polars._typing import SchemaDict

# Unicode scripts as the first word(s) of a letter's Unicode name; kana are one script, since
# only Japanese writes either.
LATIN, CYRILLIC, ARABIC, DEVANAGARI, THAI, HANGUL, KANA, HAN = (
    "Latin", "Cyrillic", "Arabic", "Devanagari", "Thai", "Hangul", "Kana", "Han",
)  # fmt: skip
SCRIPT_NAME_PREFIXES = (
    ("LATIN", LATIN),
    ("CYRILLIC", CYRILLIC),
    ("ARABIC", ARABIC),
    ("DEVANAGARI", DEVANAGARI),
    ("THAI", THAI),
    ("HANGUL", HANGUL),
    ("HIRAGANA", KANA),
    ("KATAKANA", KANA),  # also KATAKANA-HIRAGANA PROLONGED SOUND MARK
    ("CJK", HAN),  # CJK UNIFIED IDEOGRAPH-..., CJK COMPATIBILITY IDEOGRAPH-...
)


class LanguageFacts(NamedTuple):
    library_code: str  # py3langid's label for the language
    scripts: frozenset[str]  # the scripts the language is written in


# Every language of data/languages.py: our code -> py3langid's code and the language's scripts.
# Korean is given Hangul only: a modern Korean answer in Hanja alone is too rare to make every
# Han-only text three-way ambiguous.
IDENTIFIABLE: dict[str, LanguageFacts] = {
    "en": LanguageFacts("en", frozenset({LATIN})),
    "ja": LanguageFacts("ja", frozenset({KANA, HAN})),
    "ko": LanguageFacts("ko", frozenset({HANGUL})),
    "zh": LanguageFacts("zh", frozenset({HAN})),
    "nl": LanguageFacts("nl", frozenset({LATIN})),
    "it": LanguageFacts("it", frozenset({LATIN})),
    "de": LanguageFacts("de", frozenset({LATIN})),
    "fr": LanguageFacts("fr", frozenset({LATIN})),
    "es": LanguageFacts("es", frozenset({LATIN})),
    "pt": LanguageFacts("pt", frozenset({LATIN})),
    "ru": LanguageFacts("ru", frozenset({CYRILLIC})),
    "ar": LanguageFacts("ar", frozenset({ARABIC})),
    "hi": LanguageFacts("hi", frozenset({DEVANAGARI})),
    "th": LanguageFacts("th", frozenset({THAI})),
    "vi": LanguageFacts("vi", frozenset({LATIN})),
    "tr": LanguageFacts("tr", frozenset({LATIN})),
}

DEFAULT_MIN_CHARS = 2
DEFAULT_MIN_CONFIDENCE = 0.8


def answer_letters(text: str) -> str:
    """The letters of ``text`` (Unicode category L) after NFKC normalisation, in order.

    NFKC folds full-width Latin, half-width katakana and sub/superscript digits ("H₂O") into
    their plain forms; marks (Thai and Devanagari vowel signs) are not letters and are dropped.
    """
    return "".join(char for char in unicodedata.normalize("NFKC", text) if unicodedata.category(char).startswith("L"))


def letter_script(letter: str) -> str | None:
    """The script of one letter from its Unicode name, or None for a script no language here writes."""
    name = unicodedata.name(letter, "")
    for prefix, script in SCRIPT_NAME_PREFIXES:
        if name.startswith(prefix):
            return script
    return None


def plausible_languages(letters: str, candidates: Sequence[str]) -> list[str]:
    """The candidates whose scripts cover the most of ``letters`` (all tied ones, in candidate order);
    empty when no candidate writes any of them."""
    scripts = [letter_script(letter) for letter in letters]
    coverage = {code: sum(script in IDENTIFIABLE[code].scripts for script in scripts) for code in candidates}
    best = max(coverage.values(), default=0)
    return [code for code in candidates if best > 0 and coverage[code] == best]


class LanguageIdentifier:
    """Identifies which of ``candidates`` (our language codes) a short text is in; see the module docstring.

    ``min_chars``: the fewest letters a text in a script several candidates share needs (a script
    only one candidate writes decides from one letter). ``min_confidence``: the lowest
    renormalised probability py3langid must give the best of those candidates. Loading
    py3langid's model takes about 0.6 s: build one identifier per job.
    """

    def __init__(
        self,
        candidates: Sequence[str],
        min_chars: int = DEFAULT_MIN_CHARS,
        min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    ) -> None:
        self.candidates = tuple(dict.fromkeys(candidates))
        for code in self.candidates:
            language(code)  # fails with the known codes for a code data/languages.py lacks
            if code not in IDENTIFIABLE:
                raise ValueError(f"language {code!r} has no row in language_id.IDENTIFIABLE")
        if not self.candidates:
            raise ValueError("LanguageIdentifier needs at least one candidate language")
        if min_chars < 1:
            raise ValueError(f"min_chars must be at least 1, got {min_chars}")
        if not 0.0 <= min_confidence <= 1.0:
            raise ValueError(f"min_confidence must lie in [0, 1], got {min_confidence}")
        self.min_chars = min_chars
        self.min_confidence = min_confidence
        self._library_to_code = {IDENTIFIABLE[code].library_code: code for code in self.candidates}
        self._model = Py3LangidIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
        self._model.set_languages(list(self._library_to_code))

    def probabilities(self, text: str) -> dict[str, float]:
        """py3langid's probability of each candidate (our codes) for ``text``; they sum to 1."""
        return {self._library_to_code[label]: float(p) for label, p in self._model.rank(text)}

    def identify(self, text: str) -> str | None:
        """The candidate ``text`` is written in, or None when it is too short or nothing tells."""
        letters = answer_letters(text)
        plausible = plausible_languages(letters, self.candidates)
        if len(plausible) <= 1:
            return plausible[0] if plausible else None
        if len(letters) < self.min_chars:
            return None
        # Renormalising over the plausible languages is the softmax over them alone.
        probabilities = self.probabilities(unicodedata.normalize("NFKC", text))
        weights = np.array([probabilities[code] for code in plausible])
        if weights.sum() <= 0.0:
            return None
        best = int(weights.argmax())
        return plausible[best] if weights[best] / weights.sum() >= self.min_confidence else None

    def identify_all(self, texts: Iterable[str]) -> list[str | None]:
        """``identify`` for each text, in order (py3langid has no batch call)."""
        return [self.identify(text) for text in texts]


QUESTION_LANGUAGE, ENGLISH, OTHER, UNIDENTIFIED = "question_language", "english", "other", "unidentified"
ANSWER_LANGUAGE_CLASSES = (QUESTION_LANGUAGE, ENGLISH, OTHER, UNIDENTIFIED)
SHARE_KEYS = ("language", "condition", "positions")


def answer_language_class(identified: str | None, question_language: str, pivot: str = "en") -> str:
    """The class of one answer: in the question's language, in the pivot ("english"), another, or unidentified.

    For a question in the pivot language itself, an answer in it is ``question_language``.
    """
    if identified is None:
        return UNIDENTIFIED
    if identified == question_language:
        return QUESTION_LANGUAGE
    if identified == pivot:
        return ENGLISH
    return OTHER


def check_share_table(table: pl.DataFrame) -> None:
    """Fail, naming the column, value or group, unless ``table`` has one classified row per question and group."""
    needed = [*SHARE_KEYS, "example_id", "answer_language_class"]
    missing = [column for column in needed if column not in table.columns]
    if missing:
        raise ValueError(f"answer language table lacks column(s) {missing}; it has {table.columns}")
    unknown = set(table["answer_language_class"].unique().to_list()) - set(ANSWER_LANGUAGE_CLASSES)
    if unknown:
        raise ValueError(f"answer_language_class has value(s) {sorted(map(str, unknown))}; "
                         f"expected one of {ANSWER_LANGUAGE_CLASSES}")  # fmt: skip
    repeated = table.group_by(*SHARE_KEYS, "example_id").len().filter(pl.col("len") > 1)
    if repeated.height:
        first = repeated.row(0, named=True)
        raise ValueError(f"answer language table has {first['len']} rows for one question: {first}")


def answer_language_shares(table: pl.DataFrame, resamples: int, seed: int = 0) -> pl.DataFrame:
    """Per (language, condition, positions) and answer language class: the share of questions with an
    answer of that class, its bootstrap 95 % CI over questions, and the number of questions n.

    ``table``: one row per (language, condition, positions, example_id) with ``answer_language_class``.
    Returns 4 rows per group (every class, a share of 0 included, so the shares sum to 1), sorted by
    language, condition, positions and then class in ``ANSWER_LANGUAGE_CLASSES`` order; columns
    language, condition, positions, answer_language_class, share, ci_low, ci_high, n. Within a
    group every class is resampled with the same questions (the same seed over questions sorted
    by example_id).
    """
    check_share_table(table)
    rows = []
    for keys, part in table.sort(*SHARE_KEYS, "example_id").group_by(*SHARE_KEYS, maintain_order=True):
        classes = part["answer_language_class"].to_numpy()
        for answer_class in ANSWER_LANGUAGE_CLASSES:
            share, low, high = bootstrap_mean_ci((classes == answer_class).astype(np.float64), resamples, seed)
            rows.append({**dict(zip(SHARE_KEYS, keys, strict=True)), "answer_language_class": answer_class,
                         "share": share, "ci_low": low, "ci_high": high, "n": part.height})  # fmt: skip
    schema: SchemaDict = {**{key: table.schema[key] for key in SHARE_KEYS}, "answer_language_class": pl.String,
              "share": pl.Float64, "ci_low": pl.Float64, "ci_high": pl.Float64, "n": pl.Int64}  # fmt: skip
    return pl.DataFrame(rows, schema=schema)

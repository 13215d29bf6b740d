"""Languages the workflow knows, with the facts analyses need about each.

``mkqa_code`` is the key of the language in MKQA's records (MKQA writes Simplified Chinese as
``zh_cn``); MKQA's answer normalisation for each of its codes lives in
``evaluation.mkqa_scoring``. ``family`` is the language's genealogical family, which the
specificity analysis groups by.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Language:
    code: str
    name: str
    family: str
    mkqa_code: str = ""  # empty: the same as ``code``

    @property
    def mkqa_key(self) -> str:
        return self.mkqa_code or self.code


INDO_EUROPEAN = "Indo-European"

LANGUAGES: dict[str, Language] = {
    lang.code: lang
    for lang in [
        Language("en", "English", INDO_EUROPEAN),
        Language("ja", "Japanese", "Japonic"),
        Language("ko", "Korean", "Koreanic"),
        Language("zh", "Chinese", "Sino-Tibetan", mkqa_code="zh_cn"),
        Language("nl", "Dutch", INDO_EUROPEAN),
        Language("it", "Italian", INDO_EUROPEAN),
        Language("de", "German", INDO_EUROPEAN),
        Language("fr", "French", INDO_EUROPEAN),
        Language("es", "Spanish", INDO_EUROPEAN),
        Language("pt", "Portuguese", INDO_EUROPEAN),
        Language("ru", "Russian", INDO_EUROPEAN),
        Language("ar", "Arabic", "Afroasiatic"),
        Language("hi", "Hindi", INDO_EUROPEAN),
        Language("th", "Thai", "Kra-Dai"),
        Language("vi", "Vietnamese", "Austroasiatic"),
        Language("tr", "Turkish", "Turkic"),
    ]
}


class UnknownLanguageError(ValueError):
    pass


def language(code: str) -> Language:
    """Look up a language code, failing with the list of known codes."""
    try:
        return LANGUAGES[code]
    except KeyError:
        known = ", ".join(sorted(LANGUAGES))
        raise UnknownLanguageError(f"unknown language code {code!r}; known codes: {known}") from None

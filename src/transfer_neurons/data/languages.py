"""Languages the workflow knows, with the facts that analyses need about each."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Language:
    code: str
    name: str
    # MKQA's normalisation splits these scripts into characters before token F1.
    character_tokens: bool = False
    articles: tuple[str, ...] = ()


LANGUAGES: dict[str, Language] = {
    lang.code: lang
    for lang in [
        Language("en", "English", articles=("a", "an", "the")),
        Language("ja", "Japanese", character_tokens=True),
        Language("ko", "Korean"),
        Language("zh", "Chinese", character_tokens=True),
        Language("nl", "Dutch", articles=("de", "het", "een")),
        Language("it", "Italian", articles=("il", "lo", "la", "i", "gli", "le", "l", "un", "uno", "una")),
        Language("de", "German", articles=("der", "die", "das", "den", "dem", "des", "ein", "eine", "einen")),
        Language("fr", "French", articles=("le", "la", "les", "l", "un", "une", "des")),
        Language("es", "Spanish", articles=("el", "la", "los", "las", "un", "una", "unos", "unas")),
        Language("pt", "Portuguese", articles=("o", "a", "os", "as", "um", "uma")),
        Language("ru", "Russian"),
        Language("ar", "Arabic"),
        Language("hi", "Hindi"),
        Language("th", "Thai", character_tokens=True),
        Language("vi", "Vietnamese"),
        Language("tr", "Turkish"),
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

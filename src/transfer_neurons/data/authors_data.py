"""The paper authors' published sentence pickles, converted to our tables at load time.

Tezuka & Inoue ship their data as pickles under ``data/example_sentences/`` of their repository
(read here with ``safe_pickle``, which never runs code). Their layouts, seen with ``pickletools``:

- ``{lang}_parallel_train.pkl`` / ``{lang}_parallel_test.pkl``: a list of 1000 ``(English, L2)``
  tuples of strings (Tatoeba pairs), their detection and analysis splits;
- ``{lang}_mono_{split}.pkl``: a list of 1000 strings, the L2 side of the parallel list of the same
  split (``en_mono_*`` holds English sentences);
- ``{lang}_non_parallel.pkl``: 1000 ``(English, L2)`` tuples that are not translations;
- ``mkqa_example_sentences.pkl``: a dict ``{lang: [1000 MKQA questions]}`` for ja, nl, ko, it and
  en, row-aligned across languages, with no answers (so it is no QA source);
- ``{lang}_parallel_last_n_samples.pkl``: one string, a path on the authors' machine.

Only parallel lists become a corpus (``{authors: {train, test}}`` in ``corpus.sources``), and the
MKQA questions become a table with one column per language.
"""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl

from transfer_neurons.data.corpus import CorpusError, RawRow, validate_pairs
from transfer_neurons.data.languages import UnknownLanguageError, language
from transfer_neurons.data.safe_pickle import load_plain_pickle

# The authors' pairs are (English, L2), whatever the run's pivot.
AUTHORS_PIVOT = "en"
AUTHORS_SOURCE_NAME = "the authors' pickles"
_PARALLEL_NAME = re.compile(r"^(?P<lang>[a-z_]+)_parallel_(?P<split>train|test)\.pkl$")


class AuthorsDataError(ValueError):
    """A problem in the authors' question file, with the file, language and element index."""


def _load(path: Path) -> object:
    if not path.is_file():
        raise CorpusError(f"{path}: corpus file not found")
    return load_plain_pickle(path)


def _check_file_name(path: Path, target: str, split: str) -> None:
    """Catch a swapped configuration: a file named like the authors' must be of this language and split."""
    match = _PARALLEL_NAME.match(path.name)
    if match and (match["lang"], match["split"]) != (target, split):
        raise CorpusError(
            f"{path}: configured as the {split} file of {target!r}, but the name says the "
            f"{match['split']} file of {match['lang']!r}"
        )


def pair_rows(pairs: object, path: Path, split: str, pivot: str, target: str) -> list[RawRow]:
    """One ``RawRow`` per ``(English, L2)`` element of the authors' list (ids ``{split}-{index:06d}``).

    ``location`` is ``element {index}``, the element's 0-based index in the pickled list. Errors name
    the file and that index; empty sentences are left to ``validate_pairs``.
    """
    if not isinstance(pairs, list):
        raise CorpusError(f"{path}: expected a list of (English, L2) pairs, got a {type(pairs).__name__}")
    rows = []
    for index, pair in enumerate(pairs):
        expected = f"{path}: element {index}: expected an (English, L2) pair of two strings"
        if not isinstance(pair, (tuple, list)):
            raise CorpusError(f"{expected}, got {type(pair).__name__}")
        if len(pair) != 2:
            raise CorpusError(f"{expected}, got a {type(pair).__name__} of {len(pair)}")
        for column, text in zip((pivot, target), pair, strict=True):
            if not isinstance(text, str):
                raise CorpusError(
                    f"{path}: element {index}: the {column} sentence is not a string but {type(text).__name__}"
                )
        rows.append(RawRow(f"element {index}", {"id": f"{split}-{index:06d}", pivot: pair[0], target: pair[1]}))
    return rows


def load_authors_pairs(source: dict, pivot: str, target: str) -> pl.DataFrame:
    """The pairs of ``{"train": <pkl>, "test": <pkl>}`` with the authors' own split kept.

    Returns ``id, pivot_text, target_text, location, split`` (train rows first, then test, each in
    file order); ``location`` is ``<file>: element <index>``, so that the duplicate policy's
    messages name the file too. Errors name the file and the element index.
    """
    if pivot != AUTHORS_PIVOT:
        raise CorpusError(
            f"{AUTHORS_SOURCE_NAME} hold English-L2 pairs; pivot_language must be {AUTHORS_PIVOT!r}, got {pivot!r}"
        )
    missing = [split for split in ("train", "test") if split not in source]
    if missing:
        raise CorpusError(f"the authors source for {target!r} needs 'train' and 'test' files; missing {missing}")
    parts = []
    for split in ("train", "test"):
        path = Path(source[split])
        _check_file_name(path, target, split)
        pairs = validate_pairs(pair_rows(_load(path), path, split, pivot, target), str(path), pivot, target)
        parts.append(
            pairs.with_columns(
                (pl.lit(f"{path}: ") + pl.col("location")).alias("location"), pl.lit(split).alias("split")
            )
        )
    return pl.concat(parts)


def authors_parallel_questions(path: str | Path) -> pl.DataFrame:
    """The authors' ``mkqa_example_sentences.pkl`` as one row per question, one column per language.

    The file is ``{lang: [question, ...]}`` with the same number of questions in each language, row
    ``i`` being one question in every language. Columns keep the file's order (ja, nl, ko, it, en).
    Written to parquet, the table is also a corpus file (``{path: ...}``: one column per language).
    Errors name the file, the language and the element index.
    """
    path = Path(path)
    if not path.is_file():
        raise AuthorsDataError(f"{path}: question file not found")
    questions = load_plain_pickle(path)
    if not isinstance(questions, dict) or not questions:
        raise AuthorsDataError(f"{path}: expected a dict of language code -> list of questions")
    lengths = {}
    for lang, texts in questions.items():
        try:
            language(lang)
        except UnknownLanguageError as error:
            raise AuthorsDataError(f"{path}: key {lang!r}: {error}") from None
        if not isinstance(texts, list):
            raise AuthorsDataError(f"{path}: {lang}: expected a list of questions, got a {type(texts).__name__}")
        for index, text in enumerate(texts):
            if not isinstance(text, str) or not text.strip():
                raise AuthorsDataError(f"{path}: {lang}: element {index}: empty or not a string ({text!r})")
        lengths[lang] = len(texts)
    if len(set(lengths.values())) != 1:
        raise AuthorsDataError(
            f"{path}: languages hold different numbers of questions ({lengths}); rows would not align"
        )
    return pl.DataFrame({lang: [text.strip() for text in texts] for lang, texts in questions.items()})

"""Parallel corpora: load, validate and split English-L2 sentence pairs.

A prepared corpus is a parquet table with one row per pair: ``language`` (the L2's code),
``id`` (str), ``split`` ("train"/"test"), ``pivot_text`` (English), ``target_text`` (L2); a second
table lists the pairs dropped as duplicates, with the ``reason``.

Accepted user files (one column per language code, optional ``id`` column):
TSV (``.tsv``), CSV (``.csv``), JSON lines (``.jsonl``) and Parquet (``.parquet``).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from transfer_neurons.data.languages import language
from transfer_neurons.names import PIVOT_SIDE, SPLITS, TARGET_SIDE

log = logging.getLogger(__name__)


class CorpusError(ValueError):
    """A corpus problem, with the place it was found."""


@dataclass(frozen=True)
class RawRow:
    location: str  # "line 7" or "row 7", for error messages
    values: dict[str, object]


def _decode_text(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise CorpusError(f"{path}: line {line}: bytes that are not UTF-8 at offset {error.start}") from None


def _delimited_rows(path: Path, delimiter: str) -> Iterable[RawRow]:
    reader = csv.reader(io.StringIO(_decode_text(path)), delimiter=delimiter, quoting=csv.QUOTE_MINIMAL)
    header = next(reader, None)
    if header is None:
        raise CorpusError(f"{path}: the file is empty")
    header = [name.strip() for name in header]
    for line_number, fields in enumerate(reader, start=2):
        if not fields:
            continue
        if len(fields) != len(header):
            raise CorpusError(
                f"{path}: line {line_number}: {len(fields)} fields where the header has {len(header)} "
                f"({', '.join(header)}); a sentence pair is incomplete"
            )
        yield RawRow(f"line {line_number}", dict(zip(header, fields, strict=True)))


def _jsonl_rows(path: Path) -> Iterable[RawRow]:
    for line_number, line in enumerate(_decode_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise CorpusError(f"{path}: line {line_number}: not valid JSON ({error.msg})") from None
        if not isinstance(record, dict):
            raise CorpusError(f"{path}: line {line_number}: expected a JSON object")
        yield RawRow(f"line {line_number}", record)


def _parquet_rows(path: Path) -> Iterable[RawRow]:
    for row_number, record in enumerate(pl.read_parquet(path).iter_rows(named=True), start=1):
        yield RawRow(f"row {row_number}", record)


READERS = {
    ".tsv": lambda path: _delimited_rows(path, "\t"),
    ".csv": lambda path: _delimited_rows(path, ","),
    ".jsonl": _jsonl_rows,
    ".parquet": _parquet_rows,
}


def read_rows(path: Path) -> list[RawRow]:
    if not path.exists():
        raise CorpusError(f"{path}: corpus file not found")
    try:
        reader = READERS[path.suffix.lower()]
    except KeyError:
        raise CorpusError(f"{path}: unsupported corpus format {path.suffix!r}; use one of {sorted(READERS)}") from None
    return list(reader(path))


def validate_pairs(rows: list[RawRow], source: str, pivot: str, target: str) -> pl.DataFrame:
    """Check every pair; return ``id, pivot_text, target_text, location``. Errors name source, row and column."""
    language(pivot)
    language(target)
    if not rows:
        raise CorpusError(f"{source}: no sentence pairs")
    for column in (pivot, target):
        if column not in rows[0].values:
            found = ", ".join(map(str, rows[0].values))
            raise CorpusError(f"{source}: no column {column!r} (columns: {found})")
    ids, pivots, targets = [], [], []
    for index, row in enumerate(rows):
        texts = []
        for column in (pivot, target):
            value = row.values.get(column)
            if value is None:
                raise CorpusError(f"{source}: {row.location}: column {column!r}: missing; pairs are mismatched")
            if not isinstance(value, str) or not value.strip():
                raise CorpusError(f"{source}: {row.location}: column {column!r}: empty or whitespace-only sentence")
            texts.append(value.strip())
        row_id = row.values.get("id")
        ids.append(str(row_id) if row_id not in (None, "") else f"r{index + 1:06d}")
        pivots.append(texts[0])
        targets.append(texts[1])
    if len(set(ids)) != len(ids):
        raise CorpusError(f"{source}: the id column has duplicate values")
    locations = [row.location for row in rows]
    return pl.DataFrame({"id": ids, "pivot_text": pivots, "target_text": targets, "location": locations})


def handle_duplicates(
    pairs: pl.DataFrame, policy: str, source: str, pivot: str, target: str
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Apply ``corpus.duplicates`` to pairs that repeat an earlier English or L2 sentence.

    Tatoeba gives one English sentence many translations and holds some pairs twice, so repeats
    are a property of the data. ``drop`` keeps the first pair of each repeated sentence, so that
    no two pairs share a side (shared sides would tie neighbours in the k-NN analyses); ``keep``
    keeps every pair; ``error`` stops at the first repeat. Returns (kept pairs, dropped pairs with
    a ``reason``).
    """
    if policy not in DUPLICATE_POLICIES:
        raise CorpusError(f"corpus.duplicates must be one of {', '.join(DUPLICATE_POLICIES)}, got {policy!r}")
    first_seen: dict[tuple[str, str], str] = {}
    keep, reasons = [], []
    for row in pairs.iter_rows(named=True):
        sides = ((pivot, row["pivot_text"]), (target, row["target_text"]))
        repeated = [(column, text) for column, text in sides if (column, text) in first_seen]
        if repeated and policy == "error":
            column, text = repeated[0]
            raise CorpusError(
                f"{source}: {row['location']}: column {column!r}: duplicate of {first_seen[(column, text)]} "
                f"({text!r}); set corpus.duplicates to drop or keep to accept repeated sentences"
            )
        dropped = bool(repeated) and policy == "drop"
        keep.append(not dropped)
        reasons.append(f"repeated {repeated[0][0]} sentence" if dropped else None)
        if not dropped:
            for side in sides:
                first_seen.setdefault(side, row["location"])
    marked = pairs.with_columns(pl.Series("keep", keep), pl.Series("reason", reasons, dtype=pl.String))
    kept = marked.filter(pl.col("keep")).drop("keep", "reason")
    dropped_pairs = marked.filter(~pl.col("keep")).drop("keep")
    for reason, count in dropped_pairs.group_by("reason").len().sort("reason").iter_rows():
        log.info("%s: dropped %d pairs with a %s (corpus.duplicates: drop)", source, count, reason)
    return kept, dropped_pairs


def split_of(pair_id: str, test_percent: int) -> str:
    """Fixed rule: a pair is in the test split when sha256(id) mod 100 < test_percent.

    Hashing the id keeps every pair's split stable when rows are added or reordered.
    """
    bucket = int.from_bytes(hashlib.sha256(pair_id.encode()).digest()[:8], "big") % 100
    return "test" if bucket < test_percent else "train"


def assign_splits(
    pairs: pl.DataFrame, test_percent: int, max_train: int | None = None, max_test: int | None = None
) -> pl.DataFrame:
    """Add the ``split`` column and cap each split (keeping corpus order).

    Pairs that already carry a ``split`` column (a source with its own split, such as the authors'
    pickles) keep it; the others are split by ``split_of``.
    """
    if not 0 < test_percent < 100:
        raise CorpusError(f"corpus.test_percent must be between 1 and 99, got {test_percent}")
    split = pairs
    if "split" not in pairs.columns:
        split = pairs.with_columns(
            pl.col("id")
            .map_elements(lambda pair_id: split_of(pair_id, test_percent), return_dtype=pl.String)
            .alias("split")
        )
    caps = {"train": max_train, "test": max_test}
    parts = [split.filter(pl.col("split") == name).head(caps[name] or len(split)) for name in SPLITS]
    for name, part in zip(SPLITS, parts, strict=True):
        if part.height == 0:
            raise CorpusError(f"the {name} split is empty; add pairs or change corpus.test_percent")
    return pl.concat(parts).select("id", "split", "pivot_text", "target_text")


DUPLICATE_POLICIES = ("drop", "keep", "error")


def load_file_pairs(path: Path, pivot: str, target: str) -> pl.DataFrame:
    return validate_pairs(read_rows(Path(path)), str(path), pivot, target)


def load_hub_pairs(
    dataset: str,
    pivot: str,
    target: str,
    *,
    name: str | None = None,
    split: str = "train",
    revision: str | None = None,
    translation_field: str | None = "translation",
    trust_remote_code: bool = False,
    columns: dict[str, str] | None = None,
) -> pl.DataFrame:
    """Load pairs with ``datasets.load_dataset`` (Tatoeba-style ``translation`` dicts or flat columns).

    ``columns`` renames dataset columns to language codes, e.g. ``{"english": "en", "non_english": "ja"}``.
    Repeated sentences are kept here; ``corpus.duplicates`` decides about them as for files.
    """
    from datasets import load_dataset

    kwargs: dict[str, str | bool] = {"revision": revision} if revision else {}
    if trust_remote_code:
        kwargs["trust_remote_code"] = True
    table = load_dataset(dataset, name, split=split, **kwargs)
    rows = []
    for index, record in enumerate(table):
        values = record[translation_field] if translation_field else record
        if columns:
            # Datasets such as sentence-transformers' Tatoeba name columns "english"/"non_english".
            values = {columns.get(key, key): value for key, value in values.items()}
        rows.append(
            RawRow(
                f"row {index + 1}",
                {"id": record.get("id", f"r{index + 1:06d}"), pivot: values.get(pivot), target: values.get(target)},
            )
        )
    return validate_pairs(rows, f"{dataset}[{split}]", pivot, target)


def prepare_corpus(
    source: dict,
    pivot: str,
    target: str,
    test_percent: int,
    max_train: int | None = None,
    max_test: int | None = None,
    duplicates: str = "drop",
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Load a configured source (``{"path": ...}``, ``{"hub": {...}}`` or ``{"authors": {"train": ...,
    "test": ...}}``), apply the duplicate policy and split it (the authors' pickles keep their own
    split). Returns (pairs with their split, dropped pairs with the reason)."""
    if "path" in source:
        name = str(source["path"])
        pairs = load_file_pairs(Path(source["path"]), pivot, target)
    elif "hub" in source:
        hub = dict(source["hub"])
        name = hub["dataset"]
        pairs = load_hub_pairs(hub.pop("dataset"), pivot, target, **hub)
    elif "authors" in source:
        # Imported here: authors_data builds on this module's rows and checks.
        from transfer_neurons.data.authors_data import AUTHORS_SOURCE_NAME, load_authors_pairs

        name = AUTHORS_SOURCE_NAME
        pairs = load_authors_pairs(source["authors"], pivot, target)
    else:
        raise CorpusError(f"corpus source for {target!r} needs 'path', 'hub' or 'authors', got {sorted(source)}")
    kept, dropped = handle_duplicates(pairs, duplicates, name, pivot, target)
    language_column = pl.lit(target).alias("language")
    split = assign_splits(kept, test_percent, max_train, max_test)
    # The same columns for every source (the authors' pairs also carry their split).
    dropped = dropped.select("id", "pivot_text", "target_text", "reason")
    return split.select(language_column, pl.all()), dropped.select(language_column, pl.all())


def sentences(corpus: pl.DataFrame, split: str, side: str) -> list[str]:
    """The ``pivot`` or ``target`` sentences of one split, in corpus order."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    column = {PIVOT_SIDE: "pivot_text", TARGET_SIDE: "target_text"}[side]
    return corpus.filter(pl.col("split") == split)[column].to_list()

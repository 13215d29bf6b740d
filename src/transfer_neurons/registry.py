"""One registry class for every pluggable part: architectures, detectors, results, tables, figures, claims.

Each entry is declared once, with everything about it (lm-evaluation-harness's ``register_metric``
pattern); a lookup of an unknown name fails with the registered names. Free of heavy imports: the
Snakefile reads registries at start-up.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar

Entry = TypeVar("Entry")


class UnknownEntryError(LookupError, ValueError):
    """A name no entry of a registry has."""


class Registry(Generic[Entry]):
    """Named entries of one kind, in the order they were registered.

    ``kind`` names the entries in error messages ("figure", "detector"); ``error`` is the exception
    class an unknown name raises (a subclass of ``UnknownEntryError`` where callers catch it).
    """

    def __init__(self, kind: str, error: type[UnknownEntryError] = UnknownEntryError) -> None:
        self.kind = kind
        self.error = error
        self._entries: dict[str, Entry] = {}

    def register(self, entry: Entry, name: str | None = None) -> Entry:
        """Add ``entry`` under ``name`` (default: its ``name`` attribute); a name is registered once."""
        key = name if name is not None else entry.name  # type: ignore[attr-defined]
        if key in self._entries:
            raise ValueError(f"{self.kind} {key!r} is registered twice")
        self._entries[key] = entry
        return entry

    def __getitem__(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except KeyError:
            raise self.error(f"unknown {self.kind} {name!r}; registered: {', '.join(self._entries)}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        return list(self._entries)

    def values(self) -> list[Entry]:
        return list(self._entries.values())

    def items(self) -> list[tuple[str, Entry]]:
        return list(self._entries.items())

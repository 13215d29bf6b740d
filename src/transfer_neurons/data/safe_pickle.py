"""Read pickles that hold plain data only, without letting them run code.

Unpickling an ordinary pickle can call any importable function (``os.system``, ``builtins.eval``):
the file names a global and the unpickler calls it. The reader here refuses every global and
every persistent id, so nothing in the file is ever called, and then checks that what came out is
made only of lists, tuples, dicts, strings, bytes, numbers, booleans and None (the opcodes for
sets and bytearrays need no global, so that second check is what keeps them out).
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import NoReturn

# Exact types, not isinstance: a subclass could only come from a global, which is refused anyway.
PLAIN_TYPES = (list, tuple, dict, str, bytes, int, float, bool, type(None))
PLAIN_DESCRIPTION = "lists, tuples, dicts, strings, bytes, numbers, booleans and None"


class UnsafePickleError(ValueError):
    """A pickle that asks for more than plain data, or that cannot be read; the message names the file."""


class _PlainUnpickler(pickle.Unpickler):
    """An unpickler for which no global and no persistent id exists."""

    def __init__(self, file: io.BufferedIOBase, source: str):
        super().__init__(file)
        self.source = source

    def find_class(self, module: str, name: str) -> NoReturn:
        raise UnsafePickleError(
            f"{self.source}: refused the global {module}.{name}: this reader accepts {PLAIN_DESCRIPTION} only "
            f"(a pickle that names a global can run code when loaded)"
        )

    def persistent_load(self, pid: object) -> NoReturn:
        raise UnsafePickleError(
            f"{self.source}: refused a persistent id ({type(pid).__name__}): this reader accepts "
            f"{PLAIN_DESCRIPTION} only"
        )


def first_non_plain(value: object) -> tuple[str, str] | None:
    """A part of ``value`` that is not plain data, as (where, type name); None when all is plain.

    ``where`` is a Python-style path such as ``[3][1]`` or ``['ja'][0]``. Walks without recursion and
    visits each container once, so self-referencing lists (possible in a pickle) end.
    """
    pending: list[tuple[str, object]] = [("", value)]
    seen: set[int] = set()
    while pending:
        where, item = pending.pop()
        if type(item) not in PLAIN_TYPES:
            return where or "the top level", type(item).__name__
        if not isinstance(item, (list, tuple, dict)) or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, dict):
            for key, child in item.items():
                pending.append((f"{where} (a key)", key))
                pending.append((f"{where}[{key!r}]", child))
        else:
            pending.extend((f"{where}[{index}]", child) for index, child in enumerate(item))
    return None


def load_plain_pickle(path: str | Path) -> object:
    """Load a pickle of plain data (``PLAIN_DESCRIPTION``) from ``path``; nothing in it is called.

    Raises ``FileNotFoundError`` for a missing file and ``UnsafePickleError`` (naming the file and,
    where there is one, the refused global such as ``posix.system``) for anything else.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: pickle file not found")
    try:
        with path.open("rb") as file:
            value = _PlainUnpickler(file, str(path)).load()
    except UnsafePickleError:
        raise
    except Exception as error:  # a truncated or corrupt file fails in many ways; report them as one
        raise UnsafePickleError(
            f"{path}: not a readable pickle of plain data ({type(error).__name__}: {error})"
        ) from None
    problem = first_non_plain(value)
    if problem is not None:
        where, type_name = problem
        raise UnsafePickleError(f"{path}: {where}: a {type_name}; this reader accepts {PLAIN_DESCRIPTION} only")
    return value

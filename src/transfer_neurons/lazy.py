"""Modules imported on first use, for the code the Snakefile reads at start-up.

The Snakefile reads the figure, table and detector registries to plan its jobs, in every
cluster job too; polars and altair take over a second each to import, and planning never
touches them. ``pl = lazy_import("polars")`` binds the name at once and runs the import the
first time an attribute is read.

The stand-in is not put in ``sys.modules``: Snakemake imports polars itself, from several
threads at once, and a half-loaded lazy module there fails in one of them (seen as
"module 'polars' has no attribute 'LazyFrame'"). A plain import under Python's import lock
is what those threads get instead.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType
from typing import Any


class _DeferredModule(ModuleType):
    """Stands in for a module until one of its attributes is read, then imports it."""

    def __getattr__(self, attribute: str) -> Any:
        module = importlib.import_module(self.__name__)
        self.__dict__.update(vars(module))  # later reads find the attributes directly
        return getattr(module, attribute)


def lazy_import(name: str) -> ModuleType:
    """The module ``name``, imported when one of its attributes is first read."""
    if importlib.util.find_spec(name) is None:
        raise ModuleNotFoundError(f"no module named {name!r}")
    return _DeferredModule(name)

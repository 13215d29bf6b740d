"""Modules imported on first use, for the code the Snakefile reads at start-up.

The Snakefile reads the figure, table and detector registries to plan its jobs, in every
cluster job too; polars and altair take over a second each to import, and planning never
touches them. ``pl = lazy_import("polars")`` binds the name at once and runs the import the
first time an attribute is read.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType


def lazy_import(name: str) -> ModuleType:
    """The module ``name``, imported when one of its attributes is first read."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ModuleNotFoundError(f"no module named {name!r}")
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module

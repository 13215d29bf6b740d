"""Send a rule's logging and progress bars to its Snakemake log file."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def logged_to(path: str | Path) -> Iterator[None]:
    """Route ``logging`` and stderr (tqdm) to ``path`` for the duration of a rule."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as stream, contextlib.redirect_stderr(stream):
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        try:
            yield
        except Exception:
            logging.getLogger("transfer_neurons").exception("rule failed")
            raise
        finally:
            root.removeHandler(handler)

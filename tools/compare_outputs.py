"""Compare two finished workflow directories output by output: every parquet table, CSV and figure spec.

    python tools/compare_outputs.py BEFORE_DIR AFTER_DIR

Parquet files are compared as tables (column names, order, dtypes and every value), CSVs as text
and Vega-Lite specs as parsed JSON, so that a refactor can show it changed no result. Exits 1
on the first list of differences, naming each file.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import polars as pl

PATTERNS = ("results/**/*.parquet", "reports/tables/**/*.csv", "reports/figures/**/*.vl.json")


def outputs(directory: Path) -> dict[str, Path]:
    """Relative path -> file, for every compared output under ``directory``."""
    return {str(path.relative_to(directory)): path for pattern in PATTERNS for path in sorted(directory.glob(pattern))}


def same_content(first: Path, second: Path) -> bool:
    if first.suffix == ".parquet":
        return pl.read_parquet(first).equals(pl.read_parquet(second), null_equal=True) and (
            pl.read_parquet(first).schema == pl.read_parquet(second).schema
        )
    if first.name.endswith(".vl.json"):
        return json.loads(first.read_text()) == json.loads(second.read_text())
    return first.read_text() == second.read_text()


def differences(before: Path, after: Path) -> list[str]:
    old, new = outputs(before), outputs(after)
    found = [f"only before: {name}" for name in sorted(set(old) - set(new))]
    found += [f"only after: {name}" for name in sorted(set(new) - set(old))]
    found += [f"differs: {name}" for name in sorted(set(old) & set(new)) if not same_content(old[name], new[name])]
    return found


def main(argv: list[str]) -> int:
    before, after = (Path(argument) for argument in argv)
    found = differences(before, after)
    print("\n".join(found) or f"identical: {len(outputs(before))} outputs")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

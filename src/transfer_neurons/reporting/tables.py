"""Writing the summary tables of one model (the ``summary_tables`` rule), and the claims table from them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from transfer_neurons.data.tidy import read_tables
from transfer_neurons.reporting import analyses  # noqa: F401  (registers every table and claim)
from transfer_neurons.reporting.claims import claims_table
from transfer_neurons.reporting.registry import TABLES, FigureContext

CLAIMS_TABLE = "claims"  # the table of the paper's claims, built from the others (reporting.claims)


def write_summary_tables(
    inputs: Mapping[str, Sequence[str | Path]], context: FigureContext, outputs: Sequence[str | Path]
) -> None:
    """Build every table in ``outputs`` (named by file stem) and write it as CSV; ``claims`` last,
    from the others."""
    results = {name: read_tables(paths) for name, paths in inputs.items()}
    tables = {}
    for path in outputs:
        if Path(path).stem != CLAIMS_TABLE:
            tables[Path(path).stem] = TABLES[Path(path).stem].build(results, context.settings)
            tables[Path(path).stem].write_csv(path)
    for path in outputs:
        if Path(path).stem == CLAIMS_TABLE:
            claims_table(tables, context).write_csv(path)

"""Rule summary_tables: every table the report quotes, for one model."""

import sys
from pathlib import Path

sys.path.insert(0, f"{snakemake.scriptdir}/../src")
from transfer_neurons.logs import logged_to
from transfer_neurons.report_tables import all_tables

with logged_to(snakemake.log[0]):
    results = {kind: list(snakemake.input[kind]) for kind in snakemake.input.keys()}
    settings = snakemake.params.settings
    tables = all_tables(
        results,
        main_label=settings["main_label"],
        knn_metric=settings["knn_metric"],
        resamples=settings["resamples"],
    )
    for path in snakemake.output.tables:
        tables[Path(path).stem].write_csv(path)

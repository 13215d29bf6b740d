"""Rule summary_tables: every table the report quotes, for one model."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")
from transfer_neurons.logs import logged_to
from transfer_neurons.reporting.figures import FigureSettings
from transfer_neurons.reporting.tables import write_summary_tables

with logged_to(snakemake.log[0]):
    inputs = {name: list(snakemake.input[name]) for name in snakemake.params.results}
    write_summary_tables(inputs, FigureSettings(**snakemake.params.settings), snakemake.output.tables)

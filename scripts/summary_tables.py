"""Rule summary_tables: every table the report quotes, and the claims table, for one model."""

from transfer_neurons.logs import logged_to
from transfer_neurons.model.manifest import manifest_facts
from transfer_neurons.reporting.registry import FigureContext, FigureSettings
from transfer_neurons.reporting.tables import write_summary_tables

with logged_to(snakemake.log[0]):
    inputs = {name: list(snakemake.input[name]) for name in snakemake.params.results}
    context = FigureContext(
        snakemake.wildcards.model, FigureSettings(**snakemake.params.settings), manifest_facts(snakemake.input.manifest)
    )
    write_summary_tables(inputs, context, [*snakemake.output.tables, snakemake.output.claims])

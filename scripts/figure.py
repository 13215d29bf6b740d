"""Rules figure_detection and figure_evaluation: one figure of the registry, by name."""

from pathlib import Path

from transfer_neurons.logs import logged_to
from transfer_neurons.model.manifest import manifest_facts
from transfer_neurons.reporting.figures import draw_figure
from transfer_neurons.reporting.registry import FigureContext, FigureSettings

with logged_to(snakemake.log[0]):
    context = FigureContext(
        model=snakemake.wildcards.model,
        settings=FigureSettings(**snakemake.params.settings),
        facts=manifest_facts(snakemake.input.manifest),
        detector=snakemake.wildcards.get("detector"),
    )
    inputs = {name: list(snakemake.input[name]) for name in snakemake.params.results}
    draw_figure(snakemake.wildcards.figure, inputs, context, Path(snakemake.output.png), Path(snakemake.output.spec))

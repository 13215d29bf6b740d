"""Rule figure_evaluation: one evaluation figure, by name."""

import sys
from pathlib import Path

sys.path.insert(0, f"{snakemake.scriptdir}/../src")
from transfer_neurons.evaluation_figures import build_chart
from transfer_neurons.figures import save_chart
from transfer_neurons.logs import logged_to

with logged_to(snakemake.log[0]):
    inputs = {kind: list(snakemake.input[kind]) for kind in snakemake.input.keys()}
    chart = build_chart(
        snakemake.wildcards.figure, inputs, model=snakemake.wildcards.model, **snakemake.params.settings
    )
    save_chart(chart, Path(snakemake.output.png), Path(snakemake.output.spec))

"""Rule prepare_model: any configured model source -> local directory + manifest."""

from pathlib import Path

from transfer_neurons.logs import logged_to
from transfer_neurons.model.loading import prepare_model

with logged_to(snakemake.log[0]):
    prepare_model(snakemake.wildcards.model, snakemake.params.spec, Path(snakemake.output.manifest).parent)

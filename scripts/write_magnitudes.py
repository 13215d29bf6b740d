"""Rule write_magnitudes: how much each neuron writes over the L2 training sentences."""

from transfer_neurons.detection.magnitudes import run_write_magnitudes
from transfer_neurons.logs import logged_to

with logged_to(snakemake.log[0]):
    run_write_magnitudes(
        snakemake.input.manifest,
        snakemake.input.train,
        labels={"model": snakemake.wildcards.model, "language": snakemake.wildcards.lang},
    ).write_parquet(snakemake.output.magnitudes)

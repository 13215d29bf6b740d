"""Rule lape: LAPE language-specific neurons of every language."""

from transfer_neurons.detection.lape import LapeSettings
from transfer_neurons.detection.stages import select_lape_neurons
from transfer_neurons.logs import logged_to

with logged_to(snakemake.log[0]):
    select_lape_neurons(
        dict(zip(snakemake.params.languages, snakemake.input.trains, strict=True)),
        pivot=snakemake.params.pivot,
        settings=LapeSettings(**snakemake.params.settings),
        labels={"model": snakemake.wildcards.model},
        pivot_dump=snakemake.input.pivot_train,
    ).write_parquet(snakemake.output.neurons)

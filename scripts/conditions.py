"""Rule conditions: the neuron sets of every intervention condition."""

from transfer_neurons.evaluation.conditions import BaselineSettings, make_conditions
from transfer_neurons.logs import logged_to

with logged_to(snakemake.log[0]):
    make_conditions(
        snakemake.input.manifest,
        snakemake.input.top,
        type1_fraction=snakemake.params.type1_fraction,
        main_label=snakemake.params.main_label,
        baselines=BaselineSettings(**snakemake.params.baselines),
        magnitudes=snakemake.input.get("magnitudes"),
        lape=snakemake.input.get("lape"),
        labels={"model": snakemake.wildcards.model, "language": snakemake.wildcards.lang},
    ).write_parquet(snakemake.output.conditions)

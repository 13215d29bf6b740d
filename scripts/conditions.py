"""Rule conditions: the neuron sets of every intervention condition."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")
from transfer_neurons.evaluation.conditions import make_conditions
from transfer_neurons.logs import logged_to

with logged_to(snakemake.log[0]):
    make_conditions(
        snakemake.input.manifest,
        snakemake.input.top,
        type1_fraction=snakemake.params.type1_fraction,
        main_label=snakemake.params.main_label,
        seeds=snakemake.params.seeds,
        sweep_seeds=snakemake.params.sweep_seeds,
        layer_matched=snakemake.params.layer_matched,
    ).write_parquet(snakemake.output.conditions)

"""Rule evaluate_amplification: the factor sweep of the transfer neurons and their controls for one language."""

from transfer_neurons.evaluation.amplification import AmplificationSettings, run_amplification
from transfer_neurons.logs import logged_to

with logged_to(snakemake.log[0]):
    run_amplification(
        snakemake.input.manifest,
        snakemake.input.conditions,
        dict(snakemake.params.source),
        snakemake.input.task,
        snakemake.input.pairs,
        snakemake.input.test,
        AmplificationSettings(**snakemake.params.settings),
        main_label=snakemake.params.main_label,
        **snakemake.params.runtime,
        labels={"model": snakemake.wildcards.model, "language": snakemake.wildcards.lang},
    ).write_parquet(snakemake.output.values)

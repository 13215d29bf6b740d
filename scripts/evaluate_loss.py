"""Rule evaluate_loss: next-token loss of every language's held-out text under one language's conditions."""

from transfer_neurons.evaluation.conditions import InterventionSettings
from transfer_neurons.evaluation.loss import run_loss_evaluation
from transfer_neurons.logs import logged_to

with logged_to(snakemake.log[0]):
    run_loss_evaluation(
        snakemake.input.manifest,
        snakemake.input.conditions,
        dict(zip(snakemake.params.languages, snakemake.input.pairs, strict=True)),
        InterventionSettings(**snakemake.params.settings),
        kinds=snakemake.params.kinds,
        main_label=snakemake.params.main_label,
        seeds=snakemake.params.seeds,
        pivot=snakemake.params.pivot,
        n_sentences=snakemake.params.n_sentences,
        every_language=snakemake.params.every_language,
        **snakemake.params.runtime,
        labels={"model": snakemake.wildcards.model, "language": snakemake.wildcards.lang},
    ).write_parquet(snakemake.output.losses)

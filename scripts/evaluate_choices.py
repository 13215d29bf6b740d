"""Rule evaluate_choices: the built-in multiple-choice task under one language's conditions."""

from transfer_neurons.evaluation.choices import run_choices
from transfer_neurons.evaluation.conditions import InterventionSettings
from transfer_neurons.logs import logged_to

with logged_to(snakemake.log[0]):
    run_choices(
        snakemake.input.manifest,
        snakemake.input.conditions,
        dict(zip(snakemake.params.task_languages, snakemake.input.tasks, strict=True)),
        InterventionSettings(**snakemake.params.settings),
        kinds=snakemake.params.kinds,
        seeds=snakemake.params.seeds,
        main_label=snakemake.params.main_label,
        limit=snakemake.params.limit,
        **snakemake.params.runtime,
        labels={"model": snakemake.wildcards.model, "language": snakemake.wildcards.lang},
    ).write_parquet(snakemake.output.scores)

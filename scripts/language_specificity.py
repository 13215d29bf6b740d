"""Rule language_specificity: eta^2 and ANOVA p of every top-N neuron."""

from transfer_neurons.evaluation.specificity import run_specificity
from transfer_neurons.logs import logged_to

with logged_to(snakemake.log[0]):
    languages = snakemake.params.languages
    run_specificity(
        dict(zip(languages, snakemake.input.tests, strict=True)),
        dict(zip(languages, snakemake.input.tops, strict=True)),
        pivot=snakemake.params.pivot,
        main_label=snakemake.params.main_label,
        groups=snakemake.params.groups,
        english_pairs=snakemake.params.english_pairs,
        labels={"model": snakemake.wildcards.model},
    ).write_parquet(snakemake.output.table)

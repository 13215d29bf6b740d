"""Rule neuron_profiles: each browsed neuron's mean last-token activation and LAPE profile per language."""

from transfer_neurons.evaluation.neuron_tokens import run_neuron_profiles
from transfer_neurons.logs import logged_to

with logged_to(snakemake.log[0]):
    languages = snakemake.params.languages
    run_neuron_profiles(
        dict(zip(languages, snakemake.input.tests, strict=True)),
        dict(zip(languages, snakemake.input.trains, strict=True)),
        snakemake.input.tops,
        pivot=snakemake.params.pivot,
        main_label=snakemake.params.main_label,
        model_name=snakemake.wildcards.model,
        pivot_train_dump=snakemake.input.pivot_train,
    ).write_parquet(snakemake.output.profiles)

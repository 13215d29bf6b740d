"""Rule neuron_tokens: the browsed neurons' top test sentences of one language, token by token."""

from transfer_neurons.evaluation.neuron_tokens import TokenSettings, run_neuron_tokens
from transfer_neurons.logs import logged_to

with logged_to(snakemake.log[0]):
    run_neuron_tokens(
        snakemake.input.manifest,
        snakemake.input.pairs,
        snakemake.input.tops,
        language=snakemake.wildcards.lang,
        pivot=snakemake.params.pivot,
        main_label=snakemake.params.main_label,
        settings=TokenSettings(**snakemake.params.settings),
        **snakemake.params.runtime,
        model_name=snakemake.wildcards.model,
    ).write_parquet(snakemake.output.tokens)

"""Rule neuron_lens: the tokens each browsed neuron's write vector promotes and suppresses."""

from transfer_neurons.evaluation.neuron_tokens import run_neuron_lens
from transfer_neurons.logs import logged_to

with logged_to(snakemake.log[0]):
    run_neuron_lens(
        snakemake.input.manifest,
        snakemake.input.tops,
        main_label=snakemake.params.main_label,
        n_tokens=snakemake.params.lens_tokens,
        **snakemake.params.runtime,
        model_name=snakemake.wildcards.model,
    ).write_parquet(snakemake.output.lens)

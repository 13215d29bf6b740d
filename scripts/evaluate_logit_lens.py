"""Rule evaluate_logit_lens: the logit lens of the last prompt token under the conditions, for one language."""

from transfer_neurons.evaluation.conditions import InterventionSettings
from transfer_neurons.evaluation.logit_lens import LogitLensSettings, run_logit_lens
from transfer_neurons.logs import logged_to

with logged_to(snakemake.log[0]):
    lens, neurons = run_logit_lens(
        snakemake.input.manifest,
        snakemake.input.conditions,
        dict(snakemake.params.source),
        LogitLensSettings(**snakemake.params.settings),
        InterventionSettings(**snakemake.params.intervention),
        main_label=snakemake.params.main_label,
        **snakemake.params.runtime,
        labels={"model": snakemake.wildcards.model, "language": snakemake.wildcards.lang},
    )
    lens.write_parquet(snakemake.output.lens)
    neurons.write_parquet(snakemake.output.neurons)

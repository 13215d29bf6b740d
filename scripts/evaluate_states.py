"""Rule evaluate_states: alignment metrics per layer under every condition."""

from transfer_neurons.evaluation.conditions import InterventionSettings
from transfer_neurons.evaluation.states import run_state_evaluation
from transfer_neurons.logs import logged_to

with logged_to(snakemake.log[0]):
    metrics, pairs = run_state_evaluation(
        snakemake.input.manifest,
        snakemake.input.pairs,
        snakemake.input.test,
        snakemake.input.conditions,
        InterventionSettings(**snakemake.params.settings),
        knn_ks=snakemake.params.knn_k,
        last_layer=snakemake.params.last_layer,
        **snakemake.params.runtime,
        labels={"model": snakemake.wildcards.model, "language": snakemake.wildcards.lang},
        arrays_path=snakemake.output.arrays,
    )
    metrics.write_parquet(snakemake.output.metrics)
    pairs.write_parquet(snakemake.output.pairs)

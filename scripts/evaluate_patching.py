"""Rule evaluate_patching: activation patching of the Type-1 neurons and their control set."""

from transfer_neurons.evaluation.patching import run_patching
from transfer_neurons.logs import logged_to

with logged_to(snakemake.log[0]):
    by_layer, by_pair = run_patching(
        snakemake.input.manifest,
        snakemake.input.pairs,
        snakemake.input.train,
        snakemake.input.conditions,
        control_seed=snakemake.params.control_seed,
        factor=snakemake.params.factor,
        max_batch_tokens=snakemake.params.max_batch_tokens,
        knn_k=snakemake.params.knn_k,
        max_pairs=snakemake.params.max_pairs,
        last_layer=snakemake.params.last_layer,
        **snakemake.params.runtime,
        labels={"model": snakemake.wildcards.model, "language": snakemake.wildcards.lang},
    )
    by_layer.write_parquet(snakemake.output.table)
    by_pair.write_parquet(snakemake.output.pairs)

"""Rule evaluate_harness: lm-evaluation-harness tasks of one language under one condition."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")
from transfer_neurons.evaluation.harness import run_harness
from transfer_neurons.logs import logged_to

with logged_to(snakemake.log[0]):
    params = snakemake.params
    run_harness(
        snakemake.input.manifest,
        snakemake.input.conditions,
        snakemake.wildcards.condition,
        params.tasks,
        include_path=params.include_path,
        num_fewshot=params.num_fewshot,
        limit=params.limit,
        batch_size=params.batch_size,
        factor=params.factor,
        positions=params.positions,
        bootstrap_iters=params.bootstrap_iters,
        device=params.device,
        labels={"model": snakemake.wildcards.model, "language": snakemake.wildcards.lang},
        results_path=snakemake.output.results,
    ).write_parquet(snakemake.output.table)

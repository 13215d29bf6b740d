"""Rule evaluate_harness: lm-evaluation-harness tasks of one language under one condition, or under
each of the language's conditions with one model load."""

from transfer_neurons.evaluation.harness import run_harness
from transfer_neurons.logs import logged_to


def as_list(paths):
    return [paths] if isinstance(paths, str) else list(paths)


with logged_to(snakemake.log[0]):
    params = snakemake.params
    outputs = zip(as_list(snakemake.output.results), as_list(snakemake.output.tables), strict=True)
    run_harness(
        snakemake.input.manifest,
        snakemake.input.conditions,
        dict(zip(params.conditions, outputs, strict=True)),
        params.tasks,
        include_path=params.include_path,
        num_fewshot=params.num_fewshot,
        limit=params.limit,
        batch_size=params.batch_size,
        factor=params.factor,
        positions=params.positions,
        bootstrap_iters=params.bootstrap_iters,
        **params.runtime,
        labels={"model": snakemake.wildcards.model, "language": snakemake.wildcards.lang},
    )

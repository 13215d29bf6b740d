"""Rule evaluate_finetuned: the base model plus one trained delta (or none: the base), measured on one language."""

from transfer_neurons.evaluation.finetune import FinetuneEvaluation, run_finetuned_evaluation
from transfer_neurons.logs import logged_to

with logged_to(snakemake.log[0]):
    run_finetuned_evaluation(
        snakemake.input.manifest,
        snakemake.input.get("delta"),
        snakemake.input.pairs,
        snakemake.input.test,
        dict(snakemake.params.source),
        snakemake.input.task,
        FinetuneEvaluation(**snakemake.params.settings),
        pivot=snakemake.params.pivot,
        **snakemake.params.runtime,
        labels={
            "model": snakemake.wildcards.model,
            "language": snakemake.wildcards.lang,
            "neuron_set": snakemake.wildcards.neuron_set,
        },
    ).write_parquet(snakemake.output.measures)

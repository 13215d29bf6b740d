"""Rule finetune: train one neuron set (or LoRA of as many parameters) on one language's training text."""

from transfer_neurons.evaluation.finetune import TrainingSettings, run_finetune
from transfer_neurons.logs import logged_to

with logged_to(snakemake.log[0]):
    run_finetune(
        snakemake.input.manifest,
        snakemake.input.conditions,
        snakemake.input.pairs,
        snakemake.wildcards.neuron_set,
        TrainingSettings(**snakemake.params.settings),
        control_seed=snakemake.params.control_seed,
        delta_path=snakemake.output.delta,
        log_path=snakemake.output.training,
        work_dir=snakemake.params.work_dir,
        **snakemake.params.runtime,
        labels={"model": snakemake.wildcards.model, "language": snakemake.wildcards.lang},
    )

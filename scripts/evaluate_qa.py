"""Rule evaluate_qa: QA answers and F1 under every QA condition."""

from transfer_neurons.evaluation.conditions import InterventionSettings
from transfer_neurons.evaluation.qa import QASettings, run_qa_evaluation
from transfer_neurons.logs import logged_to

with logged_to(snakemake.log[0]):
    run_qa_evaluation(
        snakemake.input.manifest,
        dict(snakemake.params.source),
        snakemake.wildcards.lang,
        snakemake.input.conditions,
        InterventionSettings(**snakemake.params.settings),
        QASettings(**snakemake.params.qa),
        main_label=snakemake.params.main_label,
        **snakemake.params.runtime,
        labels={"model": snakemake.wildcards.model, "language": snakemake.wildcards.lang},
    ).write_parquet(snakemake.output.answers)

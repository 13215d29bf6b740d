"""Rule evaluate_qa: QA answers and F1 under every QA condition."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")
from transfer_neurons.evaluation import InterventionSettings
from transfer_neurons.evaluation_stages import run_qa_evaluation
from transfer_neurons.logs import logged_to

with logged_to(snakemake.log[0]):
    run_qa_evaluation(
        snakemake.input.manifest,
        dict(snakemake.params.source),
        snakemake.wildcards.lang,
        snakemake.input.conditions,
        InterventionSettings(**snakemake.params.settings),
        kinds=snakemake.params.kinds,
        template=snakemake.params.template,
        max_new_tokens=snakemake.params.max_new_tokens,
        limit=snakemake.params.limit,
        main_label=snakemake.params.main_label,
        include_sweep=snakemake.params.include_sweep,
        device=snakemake.params.device,
        labels={"model": snakemake.wildcards.model, "language": snakemake.wildcards.lang},
    ).write_parquet(snakemake.output.answers)

"""Rule summary_tables: QA, alignment and specificity summaries of one model."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")
from transfer_neurons.logs import logged_to
from transfer_neurons.report import summary_tables

with logged_to(snakemake.log[0]):
    results = {"qa": list(snakemake.input.qa), "states": list(snakemake.input.states),
               "specificity": [snakemake.input.specificity]}  # fmt: skip
    settings = snakemake.params.settings
    tables = summary_tables(results, main_label=settings["main_label"], resamples=settings["resamples"])
    tables["qa_summary"].write_csv(snakemake.output.qa)
    tables["alignment_summary"].write_csv(snakemake.output.alignment)
    tables["specificity_summary"].write_csv(snakemake.output.specificity)

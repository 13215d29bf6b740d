"""Rule detector_agreement: shared top-N neurons of the reference detector and every other one."""

from transfer_neurons.detection.agreement import run_detector_agreement
from transfer_neurons.logs import logged_to

with logged_to(snakemake.log[0]):
    languages = snakemake.params.languages
    detectors = snakemake.params.detectors
    top_lists = {detector: dict(zip(languages, snakemake.input[detector], strict=True)) for detector in detectors}
    run_detector_agreement(
        snakemake.params.reference, top_lists, labels={"model": snakemake.wildcards.model}
    ).write_parquet(snakemake.output.table)

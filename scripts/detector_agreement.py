"""Rule detector_agreement: shared top-N neurons of the centroid and correlation detectors."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")
from transfer_neurons.detection.agreement import run_detector_agreement
from transfer_neurons.logs import logged_to

with logged_to(snakemake.log[0]):
    languages = snakemake.config["languages"]
    run_detector_agreement(
        {
            "centroid": dict(zip(languages, snakemake.input.centroid, strict=True)),
            "correlation": dict(zip(languages, snakemake.input.correlation, strict=True)),
        },
        labels={"model": snakemake.wildcards.model},
    ).write_parquet(snakemake.output.table)

"""Rule lape_overlap: each language's LAPE neurons against its transfer neurons, per layer."""

from transfer_neurons.detection.agreement import run_lape_overlap
from transfer_neurons.logs import logged_to

with logged_to(snakemake.log[0]):
    run_lape_overlap(
        snakemake.input.lape,
        dict(zip(snakemake.params.languages, snakemake.input.tops, strict=True)),
        snakemake.input.manifest,
        main_label=snakemake.params.main_label,
        labels={"model": snakemake.wildcards.model},
    ).write_parquet(snakemake.output.overlap)

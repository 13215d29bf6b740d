"""Rule language_space: centroid similarities of all languages and a 2-D PCA."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")
from transfer_neurons.evaluation.language_space import run_language_space
from transfer_neurons.logs import logged_to

with logged_to(snakemake.log[0]):
    languages = snakemake.config["languages"]
    similarity, pca = run_language_space(
        snakemake.input.english,
        dict(zip(languages, snakemake.input.arrays, strict=True)),
        pivot=snakemake.params.pivot,
        pca_fractions=snakemake.params.pca_depths,
        labels={"model": snakemake.wildcards.model},
        target_test_dumps=dict(zip(languages, snakemake.input.tests, strict=True)),
    )
    similarity.write_parquet(snakemake.output.similarity)
    pca.write_parquet(snakemake.output.pca)

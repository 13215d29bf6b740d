"""Rule score_neurons: full score table and top-N lists for one model, detector and language."""

from transfer_neurons.detection.stages import score_neurons
from transfer_neurons.logs import logged_to

with logged_to(snakemake.log[0]):
    scores, top = score_neurons(
        snakemake.input.manifest,
        snakemake.input.train,
        snakemake.input.centroids,
        detector=snakemake.wildcards.detector,
        type1_fraction=snakemake.params.type1_fraction,
        top_n_labels=list(snakemake.params.top_n_sweep),
        labels={
            "model": snakemake.wildcards.model,
            "language": snakemake.wildcards.lang,
            "detector": snakemake.wildcards.detector,
        },
    )
    scores.write_parquet(snakemake.output.scores)
    top.write_parquet(snakemake.output.top)

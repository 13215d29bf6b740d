"""Rule centroids: Type-1 and Type-2 centroids per layer."""

from transfer_neurons.detection.stages import compute_centroids
from transfer_neurons.logs import logged_to

with logged_to(snakemake.log[0]):
    compute_centroids(snakemake.input.train, snakemake.output.centroids, snakemake.params.last_layer)

"""Rule dump_activations: last-token states of every layer for one split (English rows copied)."""

from transfer_neurons.data.dumps import dump_split
from transfer_neurons.logs import logged_to

with logged_to(snakemake.log[0]):
    dump_split(
        snakemake.input.manifest,
        snakemake.input.corpus,
        snakemake.wildcards.split,
        snakemake.output.dump,
        snakemake.output.pairs,
        batch_size=snakemake.params.batch_size,
        max_batch_tokens=snakemake.params.max_batch_tokens,
        max_tokens=snakemake.params.max_tokens,
        pivot_dump=(snakemake.input.pivot_dump, snakemake.input.pivot_sentences),
        **snakemake.params.runtime,
    )

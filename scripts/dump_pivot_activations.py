"""Rule dump_pivot_activations: the distinct English sentences of one split, dumped once."""

from transfer_neurons.data.dumps import dump_pivot_split
from transfer_neurons.logs import logged_to

with logged_to(snakemake.log[0]):
    dump_pivot_split(
        snakemake.input.manifest,
        snakemake.input.corpora,
        snakemake.wildcards.split,
        snakemake.output.dump,
        snakemake.output.sentences,
        batch_size=snakemake.params.batch_size,
        max_batch_tokens=snakemake.params.max_batch_tokens,
        max_tokens=snakemake.params.max_tokens,
        **snakemake.params.runtime,
    )

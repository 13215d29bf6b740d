"""Rule prepare_corpus: validate, de-duplicate and split one language's sentence pairs."""

from transfer_neurons.data.corpus import prepare_corpus
from transfer_neurons.logs import logged_to

with logged_to(snakemake.log[0]):
    pairs, dropped = prepare_corpus(
        dict(snakemake.params.source),
        snakemake.params.pivot,
        snakemake.wildcards.lang,
        snakemake.params.test_percent,
        snakemake.params.max_train,
        snakemake.params.max_test,
        snakemake.params.duplicates,
    )
    pairs.write_parquet(snakemake.output.corpus)
    dropped.write_parquet(snakemake.output.dropped)

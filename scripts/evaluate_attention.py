"""Rule evaluate_attention: attention shifts per layer and head."""

from transfer_neurons.evaluation.attention import run_attention
from transfer_neurons.evaluation.conditions import InterventionSettings
from transfer_neurons.logs import logged_to

with logged_to(snakemake.log[0]):
    shifts, per_sentence, example = run_attention(
        snakemake.input.manifest,
        snakemake.input.pairs,
        snakemake.input.conditions,
        InterventionSettings(**snakemake.params.settings),
        n_sentences=snakemake.params.n_sentences,
        seed=snakemake.params.seed,
        **snakemake.params.runtime,
        labels={"model": snakemake.wildcards.model, "language": snakemake.wildcards.lang},
    )
    shifts.write_parquet(snakemake.output.shifts)
    per_sentence.write_parquet(snakemake.output.sentences)
    example.write_parquet(snakemake.output.example)

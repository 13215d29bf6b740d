"""Rule language_states: last-token states of parallel questions in every language under each condition."""

from transfer_neurons.evaluation.conditions import InterventionSettings
from transfer_neurons.evaluation.language_states import run_language_states
from transfer_neurons.logs import logged_to

with logged_to(snakemake.log[0]):
    params = snakemake.params
    run_language_states(
        snakemake.input.manifest,
        dict(zip(params.languages, snakemake.input.conditions, strict=True)),
        snakemake.output.states,
        source=params.source,
        pivot=params.pivot,
        conditions=params.conditions,
        settings=InterventionSettings(**params.settings),
        embedding=params.embedding,
        last_layer=params.last_layer,
        max_questions=params.max_questions,
        **params.runtime,
    )

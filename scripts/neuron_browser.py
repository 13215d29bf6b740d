"""Rule neuron_browser: the static neuron browser of one model (index and one page per neuron)."""

from pathlib import Path

from transfer_neurons.logs import logged_to
from transfer_neurons.reporting.neuron_browser import BrowserSettings, build_neuron_browser

with logged_to(snakemake.log[0]):
    build_neuron_browser(
        Path(snakemake.output.site),
        model=snakemake.wildcards.model,
        languages=snakemake.params.languages,
        settings=BrowserSettings(**snakemake.params.settings),
        top_lists=snakemake.input.tops,
        scores=snakemake.input.scores,
        tokens=snakemake.input.tokens,
        lens=snakemake.input.lens,
        profiles=snakemake.input.profiles,
        lape=snakemake.input.lape or None,  # none where LAPE is disabled
        specificity=snakemake.input.specificity,
    )

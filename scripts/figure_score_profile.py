"""Rule figure_score_profile."""

import sys
from pathlib import Path

sys.path.insert(0, f"{snakemake.scriptdir}/../src")
import polars as pl

from transfer_neurons.figures import save_chart, score_profile_chart
from transfer_neurons.logs import logged_to

with logged_to(snakemake.log[0]):
    scores = pl.concat([pl.read_parquet(path) for path in snakemake.input.scores])
    title = f"{snakemake.wildcards.model}: per-layer neuron scores ({snakemake.wildcards.detector} detector)"
    save_chart(score_profile_chart(scores, title), Path(snakemake.output.png), Path(snakemake.output.spec))

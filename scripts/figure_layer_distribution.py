"""Rule figure_layer_distribution."""

import sys
from pathlib import Path

sys.path.insert(0, f"{snakemake.scriptdir}/../src")
import json

import polars as pl

from transfer_neurons.figures import layer_distribution_chart, save_chart
from transfer_neurons.logs import logged_to

with logged_to(snakemake.log[0]):
    label = str(snakemake.params.top_n)
    top = pl.concat([pl.read_parquet(path) for path in snakemake.input.top]).filter(pl.col("top_n_label") == label)
    n_layers = json.loads(open(snakemake.input.manifest).read())["facts"]["n_layers"]
    sizes = ", ".join(f"{kind} {n}" for kind, n in top.select("type", "top_n").unique().sort("type").iter_rows())
    title = f"{snakemake.wildcards.model}: layers of the top-N transfer neurons (N: {sizes})"
    chart = layer_distribution_chart(top, n_layers, title)
    save_chart(chart, Path(snakemake.output.png), Path(snakemake.output.spec))

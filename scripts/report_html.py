"""Rule report_html: the HTML report of every model."""

import sys
from pathlib import Path

sys.path.insert(0, f"{snakemake.scriptdir}/../src")
import polars as pl

from transfer_neurons.logs import logged_to
from transfer_neurons.reporting.figures import FigureContext, FigureSettings
from transfer_neurons.reporting.report import model_sections, write_report

with logged_to(snakemake.log[0]):
    output = Path(snakemake.output.html)
    settings = FigureSettings(**snakemake.params.settings)
    sections = {}
    for model in snakemake.params.models:
        figures = [Path(path) for path in snakemake.input.figures if f"/figures/{model}/" in path]
        tables = {name: pl.read_csv(f"reports/tables/{model}/{name}.csv") for name in snakemake.params.tables}
        sections[model] = model_sections(figures, tables, output.parent, FigureContext(model, settings))
    write_report(output, sections)

"""Rule report_html: the HTML report of every model."""

import sys
from pathlib import Path

sys.path.insert(0, f"{snakemake.scriptdir}/../src")
import polars as pl

from transfer_neurons.logs import logged_to
from transfer_neurons.model.manifest import manifest_facts
from transfer_neurons.reporting.figures import FigureContext, FigureSettings
from transfer_neurons.reporting.provenance import provenance
from transfer_neurons.reporting.report import FigureFiles, model_sections, write_report

with logged_to(snakemake.log[0]):
    output = Path(snakemake.output.html)
    settings = FigureSettings(**snakemake.params.settings)
    manifests = dict(zip(snakemake.params.models, snakemake.input.manifests, strict=True))
    models = {}
    for model, manifest in manifests.items():
        figures = [
            FigureFiles(Path(png), Path(png).with_suffix("").with_suffix(".vl.json"))
            for png in snakemake.input.figures
            if f"/figures/{model}/" in png
        ]
        tables = {name: pl.read_csv(f"reports/tables/{model}/{name}.csv") for name in snakemake.params.tables}
        claims = pl.read_csv(f"reports/tables/{model}/claims.csv")
        context = FigureContext(model, settings, manifest_facts(manifest))
        models[model] = model_sections(figures, tables, claims, output.parent, context)
    facts = provenance(
        manifests, [Path(path) for path in snakemake.input.data], snakemake.config, Path(snakemake.scriptdir).parent
    )
    write_report(output, models, facts)

"""Rule report_html: the HTML report of every model."""

import os
import sys
from pathlib import Path

sys.path.insert(0, f"{snakemake.scriptdir}/../src")
import polars as pl

from transfer_neurons.logs import logged_to
from transfer_neurons.model.manifest import manifest_facts
from transfer_neurons.reporting.provenance import provenance
from transfer_neurons.reporting.registry import FigureContext, FigureSettings
from transfer_neurons.reporting.report import FigureFiles, comparison_section, model_sections, write_report
from transfer_neurons.reporting.tables import CLAIMS_TABLE

with logged_to(snakemake.log[0]):
    output = Path(snakemake.output.html)
    settings = FigureSettings(**snakemake.params.settings)
    manifests = dict(zip(snakemake.params.models, snakemake.input.manifests, strict=True))
    models, claims_by_model = {}, {}
    for model, manifest in manifests.items():
        figures = [
            FigureFiles(Path(png), Path(png).with_suffix("").with_suffix(".vl.json"))
            for png in snakemake.input.figures
            if f"/figures/{model}/" in png
        ]
        tables = {
            Path(path).stem: pl.read_csv(path) for path in snakemake.input.tables if Path(path).parent.name == model
        }
        claims = claims_by_model[model] = tables.pop(CLAIMS_TABLE)
        context = FigureContext(model, settings, manifest_facts(manifest))
        models[model] = model_sections(figures, tables, claims, output.parent, context)
    facts = provenance(
        manifests, [Path(path) for path in snakemake.input.data], snakemake.config, Path(snakemake.scriptdir).parent
    )
    # With several models, one table of their verdicts side by side comes first.
    overview = comparison_section(claims_by_model) if len(claims_by_model) > 1 else None
    links = [
        (Path(os.path.relpath(index, output.parent)).as_posix(), f"{Path(index).parent.name}: neuron browser")
        for index in snakemake.input.browsers
    ]
    write_report(output, models, facts, overview=overview, links=links)

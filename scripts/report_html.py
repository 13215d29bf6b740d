"""Rule report_html: the HTML report of every model."""

import json
import os
from pathlib import Path

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
        (
            Path(os.path.relpath(Path(site) / "index.html", output.parent)).as_posix(),
            f"{Path(site).name}: neuron browser",
        )
        for site in snakemake.input.browsers
    ]
    provenance_file = Path(snakemake.output.provenance)
    provenance_file.write_text(json.dumps(facts, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    write_report(
        output,
        models,
        facts,
        overview=overview,
        links=links,
        provenance_file=Path(os.path.relpath(provenance_file, output.parent)).as_posix(),
    )

"""The summary-table registry: every table the report quotes, declared once.

An entry says which results the table reads and how it is built from them; the Snakefile reads
the registry to list the ``summary_tables`` rule's inputs and outputs
(``reports/tables/{model}/{name}.csv``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from transfer_neurons.data.tidy import read_tables
from transfer_neurons.lazy import lazy_import
from transfer_neurons.reporting import summaries
from transfer_neurons.reporting.claims import claims_table
from transfer_neurons.reporting.figures import FigureContext, FigureSettings, Results

pl = lazy_import("polars")  # the Snakefile reads this registry at start-up


@dataclass(frozen=True)
class SummaryTable:
    name: str
    inputs: tuple[str, ...]  # result names, as in the figure registry
    build: Callable[[Results, FigureSettings], pl.DataFrame]
    min_detectors: int = 1
    requires: str | None = None  # an optional part of the workflow (e.g. "lape") the table needs


def _states_by_group(results: Results, settings: FigureSettings) -> pl.DataFrame:
    return summaries.metric_by_group(results["states"], settings.main_label)


SUMMARY_TABLES: dict[str, SummaryTable] = {
    table.name: table
    for table in (
        SummaryTable(
            "data_summary",
            ("dropped_pairs", "detection_pairs"),
            lambda results, settings: summaries.data_summary(results["dropped_pairs"], results["detection_pairs"]),
        ),
        SummaryTable(
            "detection_summary",
            ("neurons",),
            lambda results, settings: summaries.detection_summary(results["neurons"], settings.main_label),
        ),
        SummaryTable(
            "qa_summary",
            ("qa",),
            lambda results, settings: summaries.qa_summary(results["qa"], settings.main_label, settings.resamples),
        ),
        SummaryTable(
            "qa_contrasts",
            ("qa",),
            lambda results, settings: summaries.qa_contrasts(results["qa"], settings.main_label, settings.resamples),
        ),
        SummaryTable(
            "alignment_summary",
            ("states",),
            lambda results, settings: summaries.alignment_summary(
                _states_by_group(results, settings), settings.knn_metric
            ),
        ),
        SummaryTable(
            "language_space_summary",
            ("language_space",),
            lambda results, settings: summaries.language_space_summary(results["language_space"]),
        ),
        SummaryTable("language_pca", ("language_pca",), lambda results, settings: results["language_pca"]),
        SummaryTable(
            "specificity_summary",
            ("specificity",),
            lambda results, settings: summaries.specificity_summary(results["specificity"]),
        ),
        SummaryTable(
            "attention_summary",
            ("attention",),
            lambda results, settings: summaries.attention_summary(results["attention"]),
        ),
        SummaryTable(
            "dose_summary",
            ("states", "qa"),
            lambda results, settings: summaries.dose_response(results["states"], results["qa"], settings.knn_metric),
        ),
        SummaryTable(
            "loss_summary",
            ("loss",),
            lambda results, settings: summaries.loss_summary(results["loss"], settings.main_label, settings.resamples),
        ),
        SummaryTable(
            "loss_selectivity",
            ("loss",),
            lambda results, settings: summaries.loss_selectivity(
                results["loss"], settings.main_label, settings.resamples, settings.pivot
            ),
        ),
        SummaryTable(
            "baseline_contrasts",
            ("state_pairs", "qa", "attention_sentences", "loss"),
            lambda results, settings: summaries.baseline_contrasts(
                results["state_pairs"],
                results["qa"],
                results["attention_sentences"],
                results["loss"],
                settings.main_label,
                settings.resamples,
            ),
        ),
        SummaryTable(
            "magnitude_summary",
            ("magnitudes", "conditions"),
            lambda results, settings: summaries.magnitude_summary(
                results["magnitudes"], results["conditions"], settings.main_label
            ),
        ),
        SummaryTable(
            "lape_summary",
            ("lape", "lape_overlap"),
            lambda results, settings: summaries.lape_summary(results["lape"], results["lape_overlap"]),
            requires="lape",
        ),
        SummaryTable(
            "harness_summary",
            ("harness",),
            lambda results, settings: summaries.harness_summary(results["harness"]),
            requires="lm_eval",
        ),
        SummaryTable(
            "patching_summary",
            ("patching",),
            lambda results, settings: summaries.patching_summary(results["patching"]),
            requires="patching",
        ),
        SummaryTable(
            "agreement_summary",
            ("agreement",),
            lambda results, settings: summaries.agreement_summary(results["agreement"], settings.main_label),
            min_detectors=2,
        ),
    )
}


def tables_of(n_detectors: int, parts: frozenset[str] = frozenset()) -> list[str]:
    """The names of the summary tables written when ``n_detectors`` detectors and the optional
    ``parts`` of the workflow run."""
    return [
        table.name
        for table in SUMMARY_TABLES.values()
        if n_detectors >= table.min_detectors and (table.requires is None or table.requires in parts)
    ]


def table_inputs(names: Sequence[str]) -> list[str]:
    """The result names the given tables read, each once."""
    return list(dict.fromkeys(result for name in names for result in SUMMARY_TABLES[name].inputs))


CLAIMS = "claims"  # the table of the paper's claims, built from the others (reporting.claims)


def write_summary_tables(
    inputs: Mapping[str, Sequence[str | Path]], context: FigureContext, outputs: Sequence[str | Path]
) -> None:
    """Build every table in ``outputs`` (named by file stem) and write it as CSV; ``claims`` last,
    from the others."""
    results = {name: read_tables(paths) for name, paths in inputs.items()}
    tables = {}
    for path in outputs:
        if Path(path).stem != CLAIMS:
            tables[Path(path).stem] = SUMMARY_TABLES[Path(path).stem].build(results, context.settings)
            tables[Path(path).stem].write_csv(path)
    for path in outputs:
        if Path(path).stem == CLAIMS:
            claims_table(tables, context).write_csv(path)

"""The reporting registries: every result file, summary table, contrast, figure and claim, each declared once.

An analysis registers its parts in its own module under ``reporting.analyses`` (one module per
analysis, with its summaries, charts and key numbers beside its entries); the Snakefile reads these
registries to plan the figure and table jobs, and the report lays them out in registration order.

* ``RESULTS``: a table a rule writes (the rule and its named output) that tables and figures read;
* ``TABLES``: a summary table the report quotes (``reports/tables/{model}/{name}.csv``), built from results;
* ``CONTRASTS``: an analysis's transfer-minus-baseline rows of the ``baseline_contrasts`` table;
* ``FIGURES``: a figure, with the table it draws, its chart, caption and this run's key numbers;
* ``CLAIMS``: one of the paper's claims (or one beyond it), tested on the summary tables.

Scopes: a ``detector`` figure is drawn per model and detector
(``reports/figures/{model}/{detector}/{name}.png``), a ``model`` figure per model
(``reports/figures/{model}/evaluation/{name}.png``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from transfer_neurons.registry import Registry

if TYPE_CHECKING:
    import polars as pl

    from transfer_neurons.reporting.claims import Finding

DETECTOR_SCOPE, MODEL_SCOPE = "detector", "model"


@dataclass(frozen=True)
class FigureSettings:
    """The run settings figures and summary tables depend on."""

    main_label: str  # the top-N label of the main N (e.g. "paper_fraction")
    knn_metric: str  # the mutual k-NN metric figures and tables quote
    resamples: int  # bootstrap resamples for confidence intervals
    pivot: str = "en"  # the pivot language (English)
    detector: str = "centroid"  # the detector whose neurons the evaluations use


@dataclass(frozen=True)
class FigureContext:
    """What a figure is drawn for: the model, its facts, the settings and (detector figures) the detector."""

    model: str
    settings: FigureSettings
    facts: Mapping[str, Any] = field(default_factory=dict)
    detector: str | None = None


Results = Mapping[str, "pl.DataFrame"]  # result name -> one table over every language
Tables = Mapping[str, "pl.DataFrame"]  # summary table name -> table


@dataclass(frozen=True)
class ResultFile:
    """A result table: the rule that writes it and the name of that rule's output."""

    name: str
    rule: str
    output: str


@dataclass(frozen=True)
class SummaryTable:
    name: str
    inputs: tuple[str, ...]  # result names
    build: Callable[[Results, FigureSettings], pl.DataFrame]
    min_detectors: int = 1
    requires: str | None = None  # an optional part of the workflow (e.g. "lape") the table needs


@dataclass(frozen=True)
class Contrast:
    """One analysis's rows of ``baseline_contrasts``: transfer neurons minus each baseline, paired by
    question or sentence, with an ``analysis`` label and the columns of ``summaries.paired_contrasts``."""

    name: str
    inputs: tuple[str, ...]  # result names
    build: Callable[[Results, FigureSettings], pl.DataFrame]


@dataclass(frozen=True)
class Figure:
    """A figure: the summary table it draws (or its own preparation of results), chart, caption, numbers.

    ``table`` is the summary table the report offers under the figure; the figure draws it unless
    ``prepare`` says otherwise, and reads its inputs unless ``inputs`` says otherwise.
    """

    name: str
    scope: str  # DETECTOR_SCOPE or MODEL_SCOPE
    chart: Callable[[pl.DataFrame, str], Any]
    caption: str  # what the figure shows and what the paper found
    table: str | None = None
    inputs: tuple[str, ...] = ()  # result names, where they are not the table's
    prepare: Callable[[Results, FigureContext], pl.DataFrame] | None = None
    numbers: Callable[[Tables, FigureContext], pl.DataFrame] | None = None  # this run's key numbers
    title: Callable[[Results, FigureContext], str] | None = None  # default: "{model}: {name}"
    min_detectors: int = 1  # figures that compare detectors need more than one
    requires: str | None = None  # an optional part of the workflow (e.g. "lape") the figure needs

    def result_names(self) -> tuple[str, ...]:
        """The results the figure reads."""
        if self.inputs or self.table is None:
            return self.inputs
        return TABLES[self.table].inputs

    def data(self, results: Results, context: FigureContext) -> pl.DataFrame:
        """The table the chart draws."""
        if self.prepare is not None:
            return self.prepare(results, context)
        if self.table is None:
            raise ValueError(f"figure {self.name!r} names neither a table nor a prepare function")
        return TABLES[self.table].build(results, context.settings)

    def title_for(self, results: Results, context: FigureContext) -> str:
        if self.title is not None:
            return self.title(results, context)
        return f"{context.model}: " + self.name.replace("_", " ")


@dataclass(frozen=True)
class ClaimSettings:
    """How one claim is judged: what it measures, the side it predicts, its smallest effect of interest.

    A SESOI is set at or below the effect the paper reports, so a case whose interval includes the
    paper's effect can never be contradicted (it does not lie short of the SESOI).
    """

    effect: str  # what a case's estimate is
    side: int  # +1: the claim predicts an estimate above 0; -1: below 0
    smallest_effect: float  # the SESOI (> 0), in the estimate's units
    unit: str  # what n counts: "questions", "pairs", "sentences", "neurons"
    controls: str  # the controls, the deciding one first
    why: str  # why this SESOI
    size_option: str  # the config option that sets n
    paper_effect: float | None = None  # the effect the paper reports (signed), where it gives a number


@dataclass(frozen=True)
class Claim:
    """One claim: its statement, the test that turns the summary tables into one case per language
    (``reporting.claims.Finding``: estimates with intervals against the deciding control, or None where
    its tables are missing), and how its cases are judged (``settings``: the predicted side, the smallest
    effect of interest). The registry is the one table of thresholds; the report prints it."""

    name: str
    statement: str
    source: str  # "paper" or "beyond the paper"
    test: Callable[[Tables, FigureContext], Finding | None]
    settings: ClaimSettings


RESULTS: Registry[ResultFile] = Registry("result")
TABLES: Registry[SummaryTable] = Registry("summary table")
CONTRASTS: Registry[Contrast] = Registry("contrast")
FIGURES: Registry[Figure] = Registry("figure")
CLAIMS: Registry[Claim] = Registry("claim")


def available(entry: SummaryTable | Figure, n_detectors: int, parts: frozenset[str]) -> bool:
    """Whether a table or figure is made when ``n_detectors`` detectors and the optional ``parts`` run."""
    return n_detectors >= entry.min_detectors and (entry.requires is None or entry.requires in parts)


def figures_of(scope: str, n_detectors: int, parts: frozenset[str] = frozenset()) -> list[str]:
    """The names of the figures drawn in ``scope``."""
    return [
        figure.name for figure in FIGURES.values() if figure.scope == scope and available(figure, n_detectors, parts)
    ]


def tables_of(n_detectors: int, parts: frozenset[str] = frozenset()) -> list[str]:
    """The names of the summary tables written."""
    return [table.name for table in TABLES.values() if available(table, n_detectors, parts)]


def table_inputs(names: Iterable[str]) -> list[str]:
    """The result names the given tables read, each once."""
    return list(dict.fromkeys(result for name in names for result in TABLES[name].inputs))

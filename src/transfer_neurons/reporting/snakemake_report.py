"""Snakemake's own report (``snakemake --report``): each figure's and table's category and caption.

Everything here is derived from the reporting registries, so a new figure or table needs no rule edit:
an entry's *analysis* is the module under ``reporting.analyses`` that registers it (found from the
functions it registers), its category is that analysis's label in ``ANALYSIS_CATEGORIES`` (an
analysis without one is labelled by its module name), and a figure bears on the claims its analysis
registers. Captions are reStructuredText, which Snakemake renders through
``reports/workflow/figure.rst`` (the rules hand the text over as ``params.caption``).
"""

from __future__ import annotations

import re

from transfer_neurons.reporting import analyses  # noqa: F401  (registers every figure, table and claim)
from transfer_neurons.reporting.registry import CLAIMS, FIGURES, TABLES, Claim

ANALYSES_PACKAGE = analyses.__name__

# Analysis module -> the category its figures and tables are listed under in Snakemake's report.
ANALYSIS_CATEGORIES = {
    "data": "data",
    "detection": "detection",
    "agreement": "detection",
    "lape": "detection",
    "alignment": "alignment",
    "qa": "QA",
    "answer_language": "QA",
    "choices": "reasoning",
    "harness": "reasoning",
    "language_space": "language space",
    "specificity": "language space",
    "attention": "mechanism",
    "logit_lens": "mechanism",
    "patching": "patching",
    "loss": "language modelling",
    "amplification": "amplification",
    "finetune": "fine-tuning",
    "dose": "controls",
    "magnitudes": "controls",
    "contrasts": "controls",
}
CLAIMS_CATEGORY = "claims"  # each model's claims table
PROJECT_REPORT_CATEGORY = "project report"  # reports/report.html, every model's claims and figures
BROWSER_CATEGORY = "neuron browser"


def _analysis_of(*functions: object) -> str:
    """The analysis module (its short name) of the first function defined under ``reporting.analyses``."""
    for function in functions:
        module = getattr(function, "__module__", "") or ""
        if module.startswith(ANALYSES_PACKAGE + "."):
            return module.removeprefix(ANALYSES_PACKAGE + ".")
    raise ValueError(f"none of {functions} is defined in a module of {ANALYSES_PACKAGE}")


def figure_analysis(name: str) -> str:
    """The analysis module that registers figure ``name`` (its chart's, preparation's or table's module)."""
    figure = FIGURES[name]
    table = TABLES[figure.table].build if figure.table is not None else None
    return _analysis_of(figure.chart, figure.prepare, table)


def table_analysis(name: str) -> str:
    """The analysis module that registers summary table ``name``."""
    return _analysis_of(TABLES[name].build)


def claim_analysis(name: str) -> str:
    """The analysis module that registers claim ``name``."""
    return _analysis_of(CLAIMS[name].test)


def category(analysis: str) -> str:
    """The report category of one analysis module: its label, or its name where it has none."""
    return ANALYSIS_CATEGORIES.get(analysis, analysis.replace("_", " "))


def figure_category(name: str) -> str:
    return category(figure_analysis(name))


def table_category(name: str) -> str:
    """A summary table's category (the claims table has its own)."""
    return CLAIMS_CATEGORY if name == "claims" else category(table_analysis(name))


def figure_claims(name: str) -> list[Claim]:
    """The claims figure ``name`` bears on: those registered by the same analysis, in registry order."""
    analysis = figure_analysis(name)
    return [claim for claim_name, claim in CLAIMS.items() if claim_analysis(claim_name) == analysis]


def rst_text(text: str) -> str:
    """``text`` as literal reStructuredText: every markup character escaped with a backslash."""
    return re.sub(r"([\\`*_|<>\[\]])", r"\\\1", text)


def figure_caption(name: str) -> str:
    """The reStructuredText caption of figure ``name``: what it shows (its registry caption), which
    claims it bears on, and the summary table that holds its numbers."""
    figure = FIGURES[name]
    claims = figure_claims(name)
    if claims:
        bears = "It bears on " + ("the claim " if len(claims) == 1 else "the claims ")
        bears += "; ".join(
            f"*{rst_text(claim.statement)}* ({rst_text(claim.name)}, {claim.source})" for claim in claims
        )
        bears += ": the verdict for this model is in the claims table."
    else:
        bears = "No claim of the claims table is tested on this analysis: the figure gives context to the others."
    table = f" Its numbers: the summary table ``{figure.table}.csv``." if figure.table else ""
    return f"{rst_text(figure.caption)}\n\n{bears}{table}"


def report_labels(name: str, file: str, detector: str | None = None) -> dict[str, str]:
    """The labels Snakemake's report lists an entry by: its name, its detector (or "all") and what file it
    is ("figure", "table", "HTML"); the model is the entry's subcategory."""
    return {"name": name, "detector": detector or "all", "file": file}


def figure_labels(name: str, detector: str | None = None) -> dict[str, str]:
    """The labels of one figure (a detection figure's detector, "all" for evaluation figures)."""
    return report_labels(name, "figure", detector)

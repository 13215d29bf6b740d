"""The HTML report: every figure with its caption, this run's numbers and its summary table.

Captions, measured-number sentences and tables come from the figure registry
(``reporting.figures``); this module only lays them out.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from pathlib import Path

from transfer_neurons.lazy import lazy_import
from transfer_neurons.reporting.figures import FIGURES, FigureContext

pl = lazy_import("polars")


def _table_html(frame: pl.DataFrame, digits: int = 3) -> str:
    header = "".join(f"<th>{html.escape(column)}</th>" for column in frame.columns)
    body = []
    for row in frame.iter_rows():
        cells = "".join(
            f"<td>{value:.{digits}f}</td>" if isinstance(value, float) else f"<td>{html.escape(str(value))}</td>"
            for value in row
        )
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{header}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def figure_section(png: Path, report_dir: Path, tables: Mapping[str, pl.DataFrame], context: FigureContext) -> str:
    """One figure with its caption (paper finding, then measured numbers) and its summary table."""
    figure = FIGURES[Path(png).stem]
    relative = Path(png).resolve().relative_to(report_dir.resolve())
    measured = figure.measured(tables, context) if figure.measured else ""
    table = _table_html(tables[figure.table]) if figure.table else ""
    name = figure.name.replace("_", " ")
    heading = html.escape(f"{name} ({Path(png).parent.name})")
    return (
        f"<figure><img src='{html.escape(str(relative))}' alt='{html.escape(figure.name)}'>"
        f"<figcaption><b>{heading}.</b> {html.escape(figure.caption)} {html.escape(measured)}</figcaption>"
        f"{table}</figure>"
    )


def model_sections(
    figures: Sequence[Path], tables: Mapping[str, pl.DataFrame], report_dir: Path, context: FigureContext
) -> list[str]:
    """HTML sections for one model: every figure with its caption and this run's numbers."""
    sections = []
    for png in figures:
        detector = Path(png).parent.name if FIGURES[Path(png).stem].scope == "detector" else None
        figure_context = FigureContext(context.model, context.settings, context.facts, detector)
        sections.append(figure_section(Path(png), report_dir, tables, figure_context))
    return sections


def write_report(
    output: Path, model_sections: Mapping[str, list[str]], *, title: str = "Transfer neurons report"
) -> None:
    """Write a self-contained HTML page from pre-rendered sections per model."""
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em}"
        "img{max-width:100%;border:1px solid #ddd}figure{margin:2em 0}"
        "table{border-collapse:collapse;font-size:90%}td,th{border:1px solid #ccc;padding:2px 6px}"
    )
    body = [f"<h1>{html.escape(title)}</h1>"]
    for model, sections in model_sections.items():
        body.append(f"<h2>{html.escape(model)}</h2>")
        body.extend(sections)
    output.write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body>{''.join(body)}</body></html>",
        encoding="utf-8",
    )

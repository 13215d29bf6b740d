"""The HTML report: the paper's claims with verdicts, then one section per figure, then provenance.

With several models, a table of every model's verdicts side by side opens the page; each model's
section then starts with its claims table, the line saying which claims the run was too small to
test, and the thresholds each claim is judged by (its registration's ``ClaimSettings``).

One self-contained page, working offline: the charts are the Vega-Lite specs the figure rules
write, drawn in the page by Vega-Embed, whose JavaScript (with Vega and Vega-Lite) is bundled into
the page by vl-convert. Each chart shows its PNG until it is drawn, and keeps it if drawing fails;
charts are drawn as they scroll into view, so the page opens fast however many there are.
Captions, key numbers and tables come from the figure registry (``reporting.figures``) and the
claims from ``reporting.claims``; this module only lays them out.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transfer_neurons.lazy import lazy_import
from transfer_neurons.reporting import analyses  # noqa: F401  (registers every figure)
from transfer_neurons.reporting.claims import (
    ALPHA,
    CONTRADICTED,
    INCONCLUSIVE,
    LARGER_RUN,
    MDE_FACTOR,
    MIN_UNITS,
    NOT_MEASURED,
    PARTLY,
    SUPPORTED,
    settings_table,
)
from transfer_neurons.reporting.registry import DETECTOR_SCOPE, FIGURES, FigureContext

if TYPE_CHECKING:
    import polars as pl
else:
    pl = lazy_import("polars")

# CSS classes of the verdicts ("partly supported (2 of 4)" by its start).
VERDICT_CLASSES = {
    SUPPORTED: "supported",
    PARTLY: "partly",
    CONTRADICTED: "refuted",
    INCONCLUSIVE: "open",
    NOT_MEASURED: "absent",
}

STYLE = """
body{font-family:system-ui,sans-serif;margin:0;color:#222;line-height:1.45}
header,main,footer{max-width:1180px;margin:auto;padding:0 1.2em}
header{padding-top:1em}h1{margin:.2em 0}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
nav{background:#f6f6f6;border:1px solid #e2e2e2;padding:.6em 1em;margin:1em 0;columns:3;font-size:90%}
nav h2{column-span:all;border:0;margin:.2em 0;font-size:1em}nav a{display:block;text-decoration:none}
table{border-collapse:collapse;font-size:85%;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}
th{background:#f0f0f0}.claims td{vertical-align:top}.claims td.numbers{font-size:90%;max-width:520px}
.verdict{font-weight:bold;white-space:nowrap;padding:1px 6px;border-radius:4px}
.supported{background:#d9f0d3}.partly{background:#fdf1c4}.refuted{background:#f8d7d3}.absent{background:#eee}
.open{background:#dde6f3}.claims td.numbers div{margin-bottom:.3em}p.note{max-width:900px}
section.figure{margin:2.2em 0}.caption{max-width:900px}.chart{min-height:120px}.chart img{max-width:100%}
details{margin:.4em 0}summary{cursor:pointer;color:#555}
footer{font-size:85%;color:#444;border-top:1px solid #ddd;margin-top:3em;padding-bottom:2em}
"""

# Draws each chart when it nears the viewport; renderAllCharts() draws every one (tests, printing).
SCRIPT = """
function specOf(name) {
  return JSON.parse(document.querySelector(`script[type="application/json"][data-chart="${name}"]`).textContent);
}
async function renderChart(element) {
  if (element.dataset.state) return;
  element.dataset.state = 'drawing';
  try {
    const holder = element.querySelector('.vega');
    await vegaEmbed(holder, specOf(element.dataset.chart), {actions: false, renderer: 'svg'});
    element.querySelector('img').hidden = true;
    element.dataset.state = 'drawn';
  } catch (error) {
    element.dataset.state = 'png';  // the PNG stays
    console.warn('chart kept as PNG:', element.dataset.chart, error);
  }
}
window.renderAllCharts = () => Promise.all([...document.querySelectorAll('.chart')].map(renderChart));
const observer = new IntersectionObserver((entries) => entries.forEach((entry) => {
  if (entry.isIntersecting) { observer.unobserve(entry.target); renderChart(entry.target); }
}), {rootMargin: '400px'});
document.querySelectorAll('.chart').forEach((element) => observer.observe(element));
"""


@dataclass(frozen=True)
class FigureFiles:
    """One drawn figure of one model: its PNG and its Vega-Lite spec."""

    png: Path
    spec: Path

    @property
    def name(self) -> str:
        return self.png.stem

    @property
    def group(self) -> str:
        """The detector of a detection figure, ``evaluation`` otherwise."""
        return self.png.parent.name


def table_html(frame: pl.DataFrame, digits: int = 3, css_class: str = "") -> str:
    header = "".join(f"<th>{html.escape(str(column))}</th>" for column in frame.columns)
    rows = []
    for row in frame.iter_rows():
        cells = "".join(
            f"<td>{value:.{digits}f}</td>" if isinstance(value, float) else f"<td>{html.escape(str(value))}</td>"
            for value in row
        )
        rows.append(f"<tr>{cells}</tr>")
    attribute = f" class='{css_class}'" if css_class else ""
    return f"<table{attribute}><thead><tr>{header}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def without_nan(value: object) -> object:
    """``value`` with every NaN or infinite float replaced by None (null in JSON)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: without_nan(item) for key, item in value.items()}
    if isinstance(value, list):
        return [without_nan(item) for item in value]
    return value


def anchor(*parts: str) -> str:
    return "-".join(part.replace("_", "-").replace("+", "plus") for part in parts)


def verdict_html(verdict: str | None) -> str:
    """A verdict as a coloured label."""
    verdict = verdict or NOT_MEASURED
    css = next((css for start, css in VERDICT_CLASSES.items() if verdict.startswith(start)), "absent")
    return f"<span class='verdict {css}'>{html.escape(verdict)}</span>"


def text(value: object) -> str:
    return "" if value is None else html.escape(str(value))


def claim_row_html(row: Mapping) -> str:
    """One claim: statement, deciding control, a line per case, sizes and MDE, verdict, verdict after Holm."""
    numbers = "".join(f"<div>{html.escape(part)}</div>" for part in (row["numbers"] or "").split("; ") if part)
    mde = "" if row["mde"] is None else f"<br>largest MDE {row['mde']:.3f}"
    counts = (f"{row['supported']} supported, {row['contradicted']} contradicted, "
              f"{row['inconclusive']} inconclusive of {row['cases']}")  # fmt: skip
    return (
        f"<tr><td>{text(row['statement'])}<br><small>{text(row['source'])}; effect: {text(row['effect'])}, "
        f"predicted {text(row['side'])}, smallest effect of interest {text(row['smallest_effect'])}</small></td>"
        f"<td>{text(row['control'])}</td><td class='numbers'>{numbers or '—'}</td>"
        f"<td>{text(row['n'])}{mde}</td>"
        f"<td>{verdict_html(row['verdict'])}<br><small>{counts}</small></td>"
        f"<td>{verdict_html(row['holm_verdict'])}<br><small>{row['comparisons']} comparisons</small></td></tr>"
    )


def too_small_note(claims: pl.DataFrame) -> str:
    """One line: which claims this run was too small to test, and what would test them."""
    small = claims.filter(pl.col("too_small").fill_null(False))
    if small.height == 0:
        return ("<p class='note'>At this run's sizes every claim could be decided: no case is left inconclusive "
                "for want of units.</p>")  # fmt: skip
    parts = []
    for row in small.iter_rows(named=True):
        mde = "" if row["mde"] is None else f"MDE up to {row['mde']:.3f} against {row['smallest_effect']:g}, "
        parts.append(f"<b>{text(row['claim'])}</b> ({mde}at {text(row['n'])}; about {row['units_needed']} per "
                     f"case needed, set by <code>{text(row['size_option'])}</code>)")  # fmt: skip
    return (
        f"<p class='note'>This run was too small to test: {'; '.join(parts)}. "
        f"<code>{LARGER_RUN}</code> runs the analyses at larger sizes "
        f"(<code>snakemake --cores 2 all --configfile {LARGER_RUN}</code>); "
        "<code>config/paper.yaml</code> runs the paper's.</p>"
    )


def claims_section(model: str, claims: pl.DataFrame) -> str:
    """The claims table of one model, what the run was too small to test, and every claim's thresholds."""
    rows = "".join(claim_row_html(row) for row in claims.iter_rows(named=True))
    return (
        f"<section id='{anchor(model, 'claims')}'><h2>{html.escape(model)}: the paper's claims in this run</h2>"
        "<p class='note'>Each claim is tested on this run's summary tables, one case per language (and QA "
        "setting): an estimate with its 95 % interval over the units n counts, against the control that would "
        "give the same result without the claimed mechanism (the strictest present, the others shown beside "
        "it). A case is <i>supported</i> when the interval excludes 0 on the predicted side, <i>contradicted</i> "
        "when it excludes 0 on the other side or every effect as large as the smallest effect of interest "
        "(where the case had the power to find one), and <i>inconclusive</i> otherwise, or with fewer than "
        f"{MIN_UNITS} units. A claim is supported in every case, contradicted in any, else partly supported or "
        f"inconclusive. MDE: the effect a case finds with 80 % power at alpha {ALPHA:g}, {MDE_FACTOR:.2f} x "
        "the standard error read off its interval. After Holm: the verdicts kept when the claim's cases are "
        "adjusted together (Holm's step-down over its comparisons, normal-approximation p-values).</p>"
        "<table class='claims'><thead><tr><th>claim</th><th>tested against</th><th>this run</th><th>n</th>"
        f"<th>verdict</th><th>after Holm</th></tr></thead><tbody>{rows}</tbody></table>"
        f"{too_small_note(claims)}"
        "<details open><summary>how each claim is judged (each claim's registered settings)</summary>"
        f"{table_html(settings_table(), css_class='claims')}</details></section>"
    )


def comparison_section(claims_by_model: Mapping[str, pl.DataFrame]) -> tuple[str, str, str]:
    """(section id, heading, HTML) of one table with every model's verdicts side by side, a column each."""
    statements = {}
    for claims in claims_by_model.values():
        statements.update(dict(zip(claims["claim"], claims["statement"], strict=True)))
    header = "".join(f"<th>{html.escape(model)}</th>" for model in claims_by_model)
    rows = []
    for claim, statement in statements.items():
        cells = []
        for claims in claims_by_model.values():
            found = claims.filter(pl.col("claim") == claim)
            if found.height == 0:
                cells.append(f"<td>{verdict_html(NOT_MEASURED)}</td>")
                continue
            row = found.row(0, named=True)
            cells.append(f"<td>{verdict_html(row['verdict'])}<br><small>after Holm: {text(row['holm_verdict'])}; "
                         f"n {text(row['n'])}</small></td>")  # fmt: skip
        rows.append(f"<tr><td>{html.escape(statement)}</td>{''.join(cells)}</tr>")
    body = (
        "<section id='claims-by-model'><h2>The paper's claims, model by model</h2>"
        "<p class='note'>Each model's verdict per claim (details in its own section below).</p>"
        f"<table class='claims'><thead><tr><th>claim</th>{header}</tr></thead><tbody>{''.join(rows)}</tbody>"
        "</table></section>"
    )
    return "claims-by-model", "claims by model", body


def figure_section(
    files: FigureFiles, report_dir: Path, tables: Mapping[str, pl.DataFrame], context: FigureContext
) -> tuple[str, str, str]:
    """(section id, heading, HTML) of one figure: caption, interactive chart over its PNG, numbers."""
    figure = FIGURES[files.name]
    section_id = anchor(context.model, files.group, files.name)
    heading = files.name.replace("_", " ") + (f" ({files.group})" if figure.scope == DETECTOR_SCOPE else "")
    png = Path(files.png).resolve().relative_to(report_dir.resolve())
    spec = json.loads(Path(files.spec).read_text())
    numbers = ""
    if figure.numbers is not None:
        numbers = "<h4>This run</h4>" + table_html(figure.numbers(tables, context))
    # JSON has no NaN (a chart's missing values are null); "</" inside a script element would end it early.
    spec_json = json.dumps(without_nan(spec), allow_nan=False).replace("</", "<\\/")
    full = ""
    if figure.table and figure.table in tables:
        full = f"<details><summary>full table: {figure.table}</summary>{table_html(tables[figure.table])}</details>"
    body = (
        f"<section class='figure' id='{section_id}'><h3>{html.escape(heading)}</h3>"
        f"<p class='caption'>{html.escape(figure.caption)}</p>"
        f"<div class='chart' data-chart='{section_id}'><div class='vega'></div>"
        f"<img src='{html.escape(png.as_posix())}' alt='{html.escape(heading)}' loading='lazy'></div>"
        f"<script type='application/json' data-chart='{section_id}'>{spec_json}</script>"
        f"{numbers}{full}</section>"
    )
    return section_id, heading, body


def model_sections(
    figures: Sequence[FigureFiles], tables: Mapping[str, pl.DataFrame], claims: pl.DataFrame, report_dir: Path,
    context: FigureContext,
) -> tuple[list[tuple[str, str]], list[str]]:  # fmt: skip
    """The table-of-contents entries and HTML sections of one model."""
    toc = [(anchor(context.model, "claims"), f"{context.model}: claims")]
    sections = [claims_section(context.model, claims)]
    for files in figures:
        detector = files.group if FIGURES[files.name].scope == DETECTOR_SCOPE else None
        figure_context = FigureContext(context.model, context.settings, context.facts, detector)
        section_id, heading, body = figure_section(files, report_dir, tables, figure_context)
        toc.append((section_id, heading))
        sections.append(body)
    return toc, sections


def provenance_html(facts: Mapping[str, Any], provenance_file: str) -> str:
    """The page's provenance: what two runs of one commit share (config, weights and data digests,
    precision), and a link to ``provenance_file`` with what each run has of its own (date, commit,
    machine, packages, model locations), so that the page itself is the same from run to run."""
    models = "".join(
        f"<li>{html.escape(name)}: {html.escape(model['source'])}, "
        f"weights SHA-256 <code>{html.escape(model['weights_sha256'])}</code></li>"
        for name, model in facts["models"].items()
    )
    data = "".join(f"<li>{html.escape(path)}: <code>{digest}</code></li>" for path, digest in facts["data"].items())
    precision = ", ".join(f"{key} {value}" for key, value in facts.get("precision", {}).items())
    link = html.escape(provenance_file)
    return (
        "<footer id='provenance'><h2>Provenance</h2>"
        f"<p>Config SHA-256 <code>{facts['config_sha256']}</code>.</p><p>Models:</p><ul>{models}</ul>"
        f"<p>Precision and reading (runtime): {html.escape(precision)}.</p>"
        f"<p>Data files (SHA-256):</p><ul>{data}</ul>"
        f"<p>This run's date, commit, machine, packages and model locations: <a href='{link}'>{link}</a>.</p>"
        "</footer>"
    )


def write_report(
    output: Path, models: Mapping[str, tuple[list[tuple[str, str]], list[str]]], provenance: Mapping[str, object],
    *, title: str = "Transfer neurons report", overview: tuple[str, str, str] | None = None,
    links: Sequence[tuple[str, str]] = (), provenance_file: str = "provenance.json",
) -> None:  # fmt: skip
    """Write the page from each model's table-of-contents entries and sections, after ``overview``
    (``comparison_section``'s id, heading and HTML) where there is one; the footer links
    ``provenance_file`` (its path from the page), where the run's own facts are."""
    import vl_convert

    entries = [(overview[0], overview[1])] if overview else []
    entries += [entry for model_entries, _ in models.values() for entry in model_entries]
    toc = "".join(f"<a href='#{section_id}'>{html.escape(heading)}</a>" for section_id, heading in entries)
    # Pages beside the report (each model's neuron browser), by their path from the report.
    toc += "".join(f"<a href='{html.escape(href)}'>{html.escape(label)}</a>" for href, label in links)
    body = (overview[2] if overview else "") + "".join(
        section for _, sections in models.values() for section in sections
    )
    names = ", ".join(html.escape(model) for model in models)
    output.write_text(
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{html.escape(title)}</title><style>{STYLE}</style>"
        # vl-convert's stub makes ``snippet`` required; the function has a default.
        f"<script>{vl_convert.javascript_bundle()}</script></head><body>"  # type: ignore[call-arg]
        f"<header><h1>{html.escape(title)}</h1><p>Models: {names}. The Transfer Neurons Hypothesis (Tezuka &amp; "
        "Inoue, EMNLP 2025), tested on this run.</p></header>"
        f"<main><nav><h2>Contents</h2>{toc}<a href='#provenance'>provenance</a></nav>{body}</main>"
        f"{provenance_html(provenance, provenance_file)}<script>{SCRIPT}</script></body></html>",
        encoding="utf-8",
    )

"""The HTML report: the paper's claims with verdicts, then one section per figure, then provenance.

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

from transfer_neurons.lazy import lazy_import
from transfer_neurons.reporting.figures import DETECTOR_SCOPE, FIGURES, FigureContext

pl = lazy_import("polars")

VERDICT_CLASSES = {
    "supported": "supported",
    "partly supported": "partly",
    "not supported": "refuted",
    "not measured": "absent",
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


def without_nan(value):
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


def claims_section(model: str, claims: pl.DataFrame) -> str:
    rows = []
    for row in claims.iter_rows(named=True):
        verdict = html.escape(row["verdict"])
        numbers = "<br>".join(html.escape(part) for part in row["numbers"].split("; ")) if row["numbers"] else "—"
        rows.append(
            f"<tr><td>{html.escape(row['statement'])}<br><small>{html.escape(row['source'])}</small></td>"
            f"<td>{html.escape(row['control'])}</td><td class='numbers'>{numbers}</td>"
            f"<td><span class='verdict {VERDICT_CLASSES.get(row['verdict'], 'absent')}'>{verdict}</span>"
            f"<br><small>{row['holding']} of {row['cases']} cases</small></td></tr>"
        )
    return (
        f"<section id='{anchor(model, 'claims')}'><h2>{html.escape(model)}: the paper's claims in this run</h2>"
        "<p>Each claim is tested on this run's summary tables against the stated control, one case per "
        "language (and QA setting); numbers are transfer neurons minus the control, with bootstrap 95 % CIs "
        "where there is a paired contrast. <i>Supported</i> means in every case, <i>partly</i> in some.</p>"
        "<table class='claims'><thead><tr><th>claim</th><th>tested against</th><th>this run</th>"
        f"<th>verdict</th></tr></thead><tbody>{''.join(rows)}</tbody></table></section>"
    )


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


def provenance_html(facts: Mapping[str, object]) -> str:
    models = "".join(
        f"<li>{html.escape(name)}: {html.escape(model['source'])} at {html.escape(model['location'])}, "
        f"weights SHA-256 <code>{html.escape(model['weights_sha256'])}</code></li>"
        for name, model in facts["models"].items()
    )
    data = "".join(f"<li>{html.escape(path)}: <code>{digest}</code></li>" for path, digest in facts["data"].items())
    packages = ", ".join(f"{name} {version}" for name, version in facts["packages"].items())
    machine = ", ".join(f"{key} {value}" for key, value in facts["machine"].items())
    return (
        "<footer id='provenance'><h2>Provenance</h2>"
        f"<p>Made {html.escape(facts['date'])} from commit <code>{html.escape(facts['commit'])}</code>; config "
        f"SHA-256 <code>{facts['config_sha256']}</code>.</p><p>Models:</p><ul>{models}</ul>"
        f"<p>Data files (SHA-256):</p><ul>{data}</ul><p>Packages: {html.escape(packages)}.</p>"
        f"<p>Machine: {html.escape(machine)}.</p></footer>"
    )


def write_report(
    output: Path, models: Mapping[str, tuple[list[tuple[str, str]], list[str]]], provenance: Mapping[str, object],
    *, title: str = "Transfer neurons report",
) -> None:  # fmt: skip
    """Write the page from each model's table-of-contents entries and sections."""
    import vl_convert

    toc = "".join(
        f"<a href='#{section_id}'>{html.escape(heading)}</a>"
        for entries, _ in models.values()
        for section_id, heading in entries
    )
    body = "".join(section for _, sections in models.values() for section in sections)
    names = ", ".join(html.escape(model) for model in models)
    output.write_text(
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{html.escape(title)}</title><style>{STYLE}</style>"
        f"<script>{vl_convert.javascript_bundle()}</script></head><body>"
        f"<header><h1>{html.escape(title)}</h1><p>Models: {names}. The Transfer Neurons Hypothesis (Tezuka &amp; "
        "Inoue, EMNLP 2025), tested on this run.</p></header>"
        f"<main><nav><h2>Contents</h2>{toc}<a href='#provenance'>provenance</a></nav>{body}</main>"
        f"{provenance_html(provenance)}<script>{SCRIPT}</script></body></html>",
        encoding="utf-8",
    )

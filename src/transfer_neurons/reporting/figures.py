"""Drawing one registered figure: read its results, build its table, draw and save it (the figure rules)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from transfer_neurons.data.tidy import read_tables
from transfer_neurons.reporting import analyses  # noqa: F401  (registers every figure)
from transfer_neurons.reporting.charts import save_chart
from transfer_neurons.reporting.registry import FIGURES, FigureContext


def draw_figure(
    name: str, inputs: Mapping[str, Sequence[str | Path]], context: FigureContext, png: Path, spec: Path
) -> None:
    """Read the figure's results, prepare its table, draw it and save the PNG and the Vega-Lite spec."""
    figure = FIGURES[name]
    results = {result: read_tables(inputs[result]) for result in figure.result_names()}
    data = figure.data(results, context)
    save_chart(figure.chart(data, figure.title_for(results, context)), Path(png), Path(spec))

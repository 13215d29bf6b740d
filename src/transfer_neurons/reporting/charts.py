"""What every analysis's charts share: colours, axes, the legend filter, and how a chart is saved.

Each analysis's chart functions live in its module under ``reporting.analyses``; each takes the
figure's table and a title and returns an Altair chart. Charts are saved both as PNG (through
vl-convert) and as the Vega-Lite JSON.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from transfer_neurons.lazy import lazy_import
from transfer_neurons.names import GROUP_ORDER, NEURON_TYPES

if TYPE_CHECKING:
    import altair as alt
else:
    alt = lazy_import("altair")  # the Snakefile reads the figure registry, which refers to these functions

# One colour per condition group, in GROUP_ORDER.
GROUP_COLOURS = [
    "#222222", "#1b9e77", "#d95f02", "#7fc9b4", "#f2a96e", "#9aa7d6", "#c9a3d6", "#e7298a", "#e6ab02", "#7570b3",
]  # fmt: skip
TYPE_COLOURS = ["#1b9e77", "#d95f02"]


def type_scale() -> alt.Scale:
    return alt.Scale(domain=list(NEURON_TYPES), range=TYPE_COLOURS)


def group_colour() -> alt.Color:
    """Colour by condition group, in ``GROUP_ORDER``."""
    return alt.Color("group:N", scale=alt.Scale(domain=GROUP_ORDER, range=GROUP_COLOURS), sort=GROUP_ORDER,
                     title="condition")  # fmt: skip


def layer_axis() -> alt.X:
    return alt.X("layer:Q", title="layer", axis=alt.Axis(tickMinStep=1, format="d"))


def save_chart(chart: alt.TopLevelMixin, png_path: Path, json_path: Path) -> None:
    """Write the PNG and the Vega-Lite spec of ``chart``."""
    png_path.parent.mkdir(parents=True, exist_ok=True)
    chart.save(str(json_path), format="json")
    chart.save(str(png_path), format="png", scale_factor=2)


def legend_filter(field: str) -> alt.Parameter:
    """A selection bound to the legend: clicking a legend entry keeps that entry's marks in full colour."""
    return alt.selection_point(fields=[field], bind="legend")

"""Altair charts of the detection and evaluation tables, one function per figure, and how they are saved.

Each function takes the figure's prepared table and a title and returns the chart; which table
a figure gets is declared in ``reporting.figures``. Charts are saved both as PNG (through
vl-convert) and as the Vega-Lite JSON.
"""

from __future__ import annotations

from pathlib import Path

from transfer_neurons.lazy import lazy_import
from transfer_neurons.names import GROUP_ORDER, KNN_PREFIX, NEURON_TYPES, NORMAL
from transfer_neurons.reporting.summaries import PER_LAYER_TOP_K

alt = lazy_import("altair")  # the Snakefile reads the figure registry, which refers to these functions
pl = lazy_import("polars")

# One colour per condition group, in GROUP_ORDER.
GROUP_COLOURS = [
    "#222222", "#1b9e77", "#d95f02", "#7fc9b4", "#f2a96e", "#9aa7d6", "#c9a3d6", "#e7298a", "#e6ab02", "#7570b3",
]  # fmt: skip
TYPE_COLOURS = ["#1b9e77", "#d95f02"]


def type_scale():
    return alt.Scale(domain=list(NEURON_TYPES), range=TYPE_COLOURS)


def group_colour():
    """Colour by condition group, in ``GROUP_ORDER``."""
    return alt.Color("group:N", scale=alt.Scale(domain=GROUP_ORDER, range=GROUP_COLOURS), sort=GROUP_ORDER,
                     title="condition")  # fmt: skip


def layer_axis():
    return alt.X("layer:Q", title="layer", axis=alt.Axis(tickMinStep=1, format="d"))


def save_chart(chart: alt.TopLevelMixin, png_path: Path, json_path: Path) -> None:
    """Write the PNG and the Vega-Lite spec of ``chart``."""
    png_path.parent.mkdir(parents=True, exist_ok=True)
    chart.save(str(json_path), format="json")
    chart.save(str(png_path), format="png", scale_factor=2)


def layer_distribution_chart(counts: pl.DataFrame, title: str) -> alt.FacetChart:
    """Bars: how many of the top-N Type-1 and Type-2 neurons sit in each layer, per language."""
    return (
        alt.Chart(counts)
        .mark_bar()
        .encode(
            x=alt.X("layer:O", title="layer"),
            y=alt.Y("neurons:Q", title="top-N neurons"),
            color=alt.Color("neuron_type:N", scale=type_scale(), title="neuron type"),
            tooltip=["language:N", "neuron_type:N", "layer:O", "neurons:Q"],
        )
        .properties(width=320, height=140)
        .facet(row=alt.Row("language:N", title=None))
        .properties(title=title)
    )


def score_profile_chart(profile: pl.DataFrame, title: str) -> alt.FacetChart:
    """Lines over layers of the mean top-k score, one line per language, one panel per type."""
    return (
        alt.Chart(profile)
        .mark_line(point=True)
        .encode(
            x=alt.X("layer:Q", title="layer"),
            y=alt.Y("top_score:Q", title=f"mean score of the layer's top {PER_LAYER_TOP_K}"),
            color=alt.Color("language:N"),
            strokeDash=alt.StrokeDash(
                "candidate:N",
                scale=alt.Scale(domain=[True, False], range=[[1, 0], [4, 3]]),
                title="candidate layer",
            ),
            tooltip=["language:N", "neuron_type:N", "layer:Q", "top_score:Q"],
        )
        .properties(width=320, height=180)
        .facet(column=alt.Column("neuron_type:N", title=None))
        .resolve_scale(y="independent")
        .properties(title=title)
    )


def qa_f1_chart(summary: pl.DataFrame, title: str) -> alt.LayerChart:
    """Mean MKQA F1 per condition group with bootstrap 95 % CI, one panel per language and position mode."""
    chosen = legend_filter("group")
    base = alt.Chart(summary).encode(x=alt.X("group:N", sort=GROUP_ORDER, title=None))
    bars = base.mark_bar().add_params(chosen).encode(
        y=alt.Y("mkqa_f1:Q", title="MKQA F1 (mean over questions, 95 % CI)"),
        color=group_colour(),
        opacity=alt.condition(chosen, alt.value(1.0), alt.value(0.2)),
        tooltip=["language:N", "positions:N", "group:N", alt.Tooltip("mkqa_f1:Q", format=".3f"),
                 alt.Tooltip("ci_low:Q", format=".3f"), alt.Tooltip("ci_high:Q", format=".3f"),
                 alt.Tooltip("mkqa_em:Q", format=".3f")],
    )  # fmt: skip
    errors = base.mark_errorbar().encode(y="ci_low:Q", y2="ci_high:Q")
    return (
        alt.layer(bars, errors, data=summary)
        .properties(width=220, height=180)
        .facet(column=alt.Column("language:N", title=None), row=alt.Row("positions:N", title="deactivated"))
        .properties(title=title)
    )


def legend_filter(field: str):
    """A selection bound to the legend: clicking a legend entry keeps that entry's marks in full colour."""
    return alt.selection_point(fields=[field], bind="legend")


def _metric_lines(frame: pl.DataFrame, y_title: str) -> alt.LayerChart:
    chosen = legend_filter("group")
    emphasis = alt.condition(chosen, alt.value(1.0), alt.value(0.1))
    base = alt.Chart(frame).encode(x=layer_axis(), color=group_colour())
    band = base.mark_area(opacity=0.2).encode(y=alt.Y("min:Q", title=y_title), y2="max:Q")
    line = (
        base.mark_line(point=alt.OverlayMarkDef(size=15))
        .encode(y="mean:Q", opacity=emphasis, tooltip=["language:N", "metric:N", "group:N", "layer:Q",
                                                        alt.Tooltip("mean:Q", format=".3f")])
        .add_params(chosen)
    )  # fmt: skip
    return alt.layer(band, line, data=frame)


def knn_chart(by_group: pl.DataFrame, title: str) -> alt.FacetChart:
    """Mutual k-NN alignment of English and L2 states per layer, per condition group."""
    frame = by_group.filter(pl.col("metric").str.starts_with("mutual_knn"))
    return (
        _metric_lines(frame, "mutual k-NN alignment")
        .properties(width=240, height=160)
        .facet(row=alt.Row("metric:N", title=None), column=alt.Column("language:N", title=None))
        .properties(title=title)
    )


def _pair_chart(by_group: pl.DataFrame, prefix: str, y_title: str, title: str) -> alt.FacetChart:
    frame = by_group.filter(pl.col("metric").str.starts_with(prefix)).with_columns(
        pl.col("metric").str.replace(prefix, "").alias("pairs")
    )
    base = alt.Chart(frame).encode(x=layer_axis(), color=group_colour())
    dash = alt.StrokeDash("pairs:N", scale=alt.Scale(domain=["parallel", "non_parallel"], range=[[1, 0], [4, 3]]))
    line = base.mark_line().encode(y=alt.Y("mean:Q", title=y_title), strokeDash=dash)
    return (
        line.properties(width=240, height=160)
        .facet(column=alt.Column("language:N", title=None))
        .properties(title=title)
    )


def state_similarity_chart(by_group: pl.DataFrame, title: str) -> alt.FacetChart:
    """Cosine of English-L2 hidden states, parallel vs non-parallel pairs."""
    return _pair_chart(by_group, "state_cosine_", "cosine of last-token states", title)


def activation_similarity_chart(by_group: pl.DataFrame, title: str) -> alt.FacetChart:
    """Cosine of English-L2 MLP activation patterns, parallel vs non-parallel pairs."""
    return _pair_chart(by_group, "activation_cosine_", "cosine of MLP activations", title)


def language_space_chart(similarity: pl.DataFrame, title: str) -> alt.FacetChart:
    """Heatmaps of centroid cosine similarity between languages, per layer and condition."""
    return (
        alt.Chart(similarity)
        .mark_rect()
        .encode(
            x=alt.X("language_a:N", title=None),
            y=alt.Y("language_b:N", title=None),
            color=alt.Color("cosine:Q", scale=alt.Scale(scheme="viridis")),
            tooltip=["condition:N", "layer:Q", "language_a:N", "language_b:N", alt.Tooltip("cosine:Q", format=".3f")],
        )
        .properties(width=70, height=70)
        .facet(row=alt.Row("condition:N", title=None), column=alt.Column("layer:O", title="layer"))
        .properties(title=title)
    )


def language_pca_chart(projection: pl.DataFrame, title: str) -> alt.FacetChart:
    """2-D PCA of last-token states of every language at chosen layers."""
    return (
        alt.Chart(projection)
        .mark_circle(size=14, opacity=0.6)
        .encode(x=alt.X("pc1:Q", title="PC 1"), y=alt.Y("pc2:Q", title="PC 2"), color=alt.Color("language:N"))
        .properties(width=200, height=200)
        .facet(column=alt.Column("layer:O", title="layer"))
        .resolve_scale(x="independent", y="independent")
        .properties(title=title)
    )


def specificity_chart(summary: pl.DataFrame, title: str) -> alt.FacetChart:
    """Share of language-specific neurons (eta^2 thresholds) among Type-1 and Type-2 neurons, by language
    and by family."""
    long = summary.unpivot(
        index=["language", "grouping", "neuron_type"],
        on=["share_eta_0.1_p_0.05", "share_eta_0.25"],
        variable_name="criterion",
    )
    return (
        alt.Chart(long)
        .mark_bar()
        .encode(
            x=alt.X("grouping:N", title=None),
            xOffset=alt.XOffset("neuron_type:N"),
            y=alt.Y("value:Q", title="share of top-N neurons", scale=alt.Scale(domain=[0, 1])),
            color=alt.Color("neuron_type:N", scale=type_scale()),
            column=alt.Column("language:N", title=None),
            row=alt.Row("criterion:N", title=None),
            tooltip=["language:N", "grouping:N", "neuron_type:N", alt.Tooltip("value:Q", format=".2f")],
        )
        .properties(width=90, height=120, title=title)
    )


def attention_shift_chart(shifts: pl.DataFrame, title: str) -> alt.FacetChart:
    """Layer x head heatmap of the JS divergence of the last token's attention from normal."""
    frame = shifts.filter(pl.col("condition") != NORMAL)
    return (
        alt.Chart(frame)
        .mark_rect()
        .encode(
            x=alt.X("head:O"),
            y=alt.Y("layer:O", sort="descending"),
            color=alt.Color("js_divergence:Q", scale=alt.Scale(scheme="magma", reverse=True), title="JS divergence"),
            tooltip=["condition:N", "layer:O", "head:O", alt.Tooltip("js_divergence:Q", format=".4f")],
        )
        .properties(width=90, height=160)
        .facet(row=alt.Row("language:N", title=None), column=alt.Column("condition:N", title=None))
        .properties(title=title)
    )


def attention_example_chart(example: pl.DataFrame, title: str) -> alt.FacetChart:
    """Head-averaged attention of the last token over the tokens of one sentence, per layer."""
    return (
        alt.Chart(example)
        .mark_rect()
        .encode(
            x=alt.X("token:N", sort=None, title=None),
            y=alt.Y("layer:O", sort="descending"),
            color=alt.Color("weight:Q", scale=alt.Scale(scheme="blues"), title="attention"),
        )
        .properties(width=220, height=180)
        .facet(column=alt.Column("condition:N", title=None))
        .properties(title=title)
    )


def detector_agreement_chart(agreement: pl.DataFrame, title: str) -> alt.FacetChart:
    """Per layer: the reference detector's top-N neurons and how many each other detector shares."""
    reference = agreement.group_by("language", "neuron_type", "layer").agg(pl.col("n_reference").first().alias("value"))
    shared = agreement.select(
        "language",
        "neuron_type",
        "layer",
        pl.col("shared").alias("value"),
        ("shared with " + pl.col("detector")).alias("count"),
    )
    long = pl.concat([reference.with_columns(pl.lit("top-N of the reference").alias("count")), shared], how="diagonal")
    return (
        alt.Chart(long)
        .mark_bar(opacity=0.8)
        .encode(
            x=alt.X("layer:O"),
            y=alt.Y("value:Q", title="neurons", stack=None),
            color=alt.Color("count:N", scale=alt.Scale(range=["#1b9e77", "#7570b3", "#e7298a", "#bbbbbb"])),
            tooltip=["language:N", "neuron_type:N", "layer:O", "count:N", "value:Q"],
        )
        .properties(width=260, height=110)
        .facet(row=alt.Row("language:N", title=None), column=alt.Column("neuron_type:N", title=None))
        .properties(title=title)
    )


def dose_response_chart(table: pl.DataFrame, title: str) -> alt.VConcatChart:
    """Layer-mean k-NN alignment and QA F1 as N grows, transfer vs random neurons."""
    knn_metric = next(column for column in table.columns if column.startswith(KNN_PREFIX))
    qa_columns = [column for column in table.columns if column.startswith("mkqa_f1_")]
    measures = [(knn_metric, "mutual k-NN (layer mean)")]
    measures += [(column, f"MKQA F1 ({column.removeprefix('mkqa_f1_')})") for column in qa_columns]
    panels = []
    for measure, label in measures:
        panels.append(
            alt.Chart(table)
            .mark_line(point=True)
            .encode(
                x=alt.X("top_n:Q", scale=alt.Scale(type="log"), title="neurons deactivated (N)"),
                y=alt.Y(f"{measure}:Q", title=label),
                color=alt.Color("language:N"),
                strokeDash=alt.StrokeDash("kind:N", title="neurons"),
            )
            .properties(width=240, height=150)
            .facet(column=alt.Column("neuron_type:N", title=None))
        )
    return alt.vconcat(*panels).properties(title=title)


def loss_change_chart(summary: pl.DataFrame, title: str) -> alt.FacetChart:
    """Change of next-token loss from normal, by text language, per condition group (with 95 % CI)."""
    frame = summary.filter(pl.col("group") != NORMAL)
    base = alt.Chart(frame).encode(
        x=alt.X("group:N", sort=GROUP_ORDER, title=None), xOffset=alt.XOffset("text_language:N")
    )
    bars = base.mark_bar().encode(
        y=alt.Y("change:Q", title="loss change from normal (nats per token)"),
        color=alt.Color("text_language:N", title="text language"),
        tooltip=["language:N", "text_language:N", "group:N", alt.Tooltip("change:Q", format=".3f"),
                 alt.Tooltip("ci_low:Q", format=".3f"), alt.Tooltip("ci_high:Q", format=".3f")],
    )  # fmt: skip
    errors = base.mark_errorbar().encode(y="ci_low:Q", y2="ci_high:Q")
    return (
        alt.layer(bars, errors, data=frame)
        .properties(width=300, height=160)
        .facet(row=alt.Row("language:N", title="neurons of"))
        .properties(title=title)
    )


def lape_layers_chart(counts: pl.DataFrame, title: str) -> alt.FacetChart:
    """Bars: how many LAPE language-specific neurons each layer has, per language."""
    return (
        alt.Chart(counts)
        .mark_bar(color="#7570b3")
        .encode(
            x=alt.X("layer:O", title="layer"),
            y=alt.Y("neurons:Q", title="LAPE neurons"),
            tooltip=["language:N", "layer:O", "neurons:Q"],
        )
        .properties(width=320, height=90)
        .facet(row=alt.Row("language:N", title=None))
        .properties(title=title)
    )


def lape_overlap_chart(overlap: pl.DataFrame, title: str) -> alt.FacetChart:
    """Per layer: transfer neurons that are also LAPE neurons of the language, against chance."""
    base = alt.Chart(overlap).encode(x=alt.X("layer:O", title="layer"))
    bars = base.mark_bar(color="#1b9e77").encode(
        y=alt.Y("overlap:Q", title="transfer neurons that are LAPE neurons"),
        tooltip=["language:N", "neuron_type:N", "layer:O", "overlap:Q", "n_transfer:Q", "n_lape:Q",
                 alt.Tooltip("expected:Q", format=".2f"), alt.Tooltip("jaccard:Q", format=".3f"),
                 alt.Tooltip("p_value:Q", format=".2g")],
    )  # fmt: skip
    chance = base.mark_tick(color="black", thickness=2).encode(y="expected:Q")
    return (
        alt.layer(bars, chance, data=overlap)
        .properties(width=260, height=100)
        .facet(row=alt.Row("language:N", title=None), column=alt.Column("neuron_type:N", title=None))
        .properties(title=title)
    )


def baseline_contrasts_chart(contrasts: pl.DataFrame, title: str) -> alt.FacetChart:
    """Transfer neurons minus each baseline, with 95 % CI, per analysis and language (0: no difference)."""
    base = alt.Chart(contrasts).encode(
        y=alt.Y("baseline:N", title=None),
        yOffset=alt.YOffset("neuron_type:N"),
        color=alt.Color("neuron_type:N", scale=type_scale()),
    )
    points = base.mark_point(filled=True).encode(
        x=alt.X("difference:Q", title="transfer minus baseline"),
        tooltip=["analysis:N", "language:N", "neuron_type:N", "baseline:N", alt.Tooltip("difference:Q", format=".4f"),
                 alt.Tooltip("ci_low:Q", format=".4f"), alt.Tooltip("ci_high:Q", format=".4f")],
    )  # fmt: skip
    errors = base.mark_errorbar().encode(x="ci_low:Q", x2="ci_high:Q")
    zero = alt.Chart().mark_rule(color="#888888").encode(x=alt.datum(0))
    return (
        alt.layer(errors, points, zero, data=contrasts)
        .properties(width=170, height=90)
        .facet(row=alt.Row("analysis:N", title=None), column=alt.Column("language:N", title=None))
        .resolve_scale(x="independent")
        .properties(title=title)
    )


def harness_chart(summary: pl.DataFrame, title: str) -> alt.FacetChart:
    """Harness score per condition group with the stderr (bars) and the seeds' range (ticks)."""
    frame = summary.with_columns(
        (pl.col("value") - pl.col("stderr").fill_null(0)).alias("low"),
        (pl.col("value") + pl.col("stderr").fill_null(0)).alias("high"),
        (pl.col("task") + " · " + pl.col("metric")).alias("measure"),
    )
    base = alt.Chart(frame).encode(x=alt.X("group:N", sort=GROUP_ORDER, title=None))
    bars = base.mark_bar().encode(
        y=alt.Y("value:Q", title="score"),
        color=group_colour(),
        tooltip=["language:N", "task:N", "metric:N", "group:N", alt.Tooltip("value:Q", format=".3f"),
                 alt.Tooltip("stderr:Q", format=".3f"), alt.Tooltip("seed_min:Q", format=".3f"),
                 alt.Tooltip("seed_max:Q", format=".3f"), "n_samples:Q"],
    )  # fmt: skip
    errors = base.mark_errorbar().encode(y="low:Q", y2="high:Q")
    spread = base.mark_tick(color="black").encode(y="seed_min:Q") + base.mark_tick(color="black").encode(y="seed_max:Q")
    return (
        alt.layer(bars, errors, spread, data=frame)
        .properties(width=220, height=150)
        .facet(row=alt.Row("measure:N", title=None), column=alt.Column("language:N", title="neurons of"))
        .properties(title=title)
    )


def patching_chart(summary: pl.DataFrame, title: str) -> alt.FacetChart:
    """Recovery of mutual k-NN alignment (layer mean) by patched layer, per source and scope."""
    frame = summary.filter(pl.col("metric") == "mutual_knn")
    return (
        alt.Chart(frame)
        .mark_line(point=True)
        .encode(
            x=alt.X("patched_layer:O", title="patched layer"),
            y=alt.Y("recovery:Q", title="recovery of mutual k-NN (layer mean)"),
            color=alt.Color("source:N", scale=alt.Scale(domain=["clean", "english", "mean"]), title="values from"),
            strokeDash=alt.StrokeDash("scope:N", title="layers patched"),
            tooltip=[
                "language:N",
                "neuron_set:N",
                "source:N",
                "scope:N",
                "patched_layer:O",
                alt.Tooltip("recovery:Q", format=".3f"),
                alt.Tooltip("value:Q", format=".3f"),
                alt.Tooltip("clean:Q", format=".3f"),
                alt.Tooltip("corrupted:Q", format=".3f"),
            ],
        )  # fmt: skip
        .properties(width=260, height=130)
        .facet(row=alt.Row("language:N", title=None), column=alt.Column("neuron_set:N", title="deactivated set"))
        .properties(title=title)
    )

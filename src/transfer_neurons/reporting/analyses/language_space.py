"""Language spaces: how similar the languages' centroids are per layer, a 2-D PCA of every language and the
number of directions each language's states span (SVD)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from transfer_neurons.lazy import lazy_import
from transfer_neurons.reporting.numbers import rounded
from transfer_neurons.reporting.registry import (
    FIGURES,
    MODEL_SCOPE,
    RESULTS,
    TABLES,
    Figure,
    FigureContext,
    ResultFile,
    SummaryTable,
    Tables,
)

if TYPE_CHECKING:
    import altair as alt
    import polars as pl
else:
    alt = lazy_import("altair")
    pl = lazy_import("polars")

RESULTS.register(ResultFile("language_space", "language_space", "similarity"))
RESULTS.register(ResultFile("language_pca", "language_space", "pca"))
RESULTS.register(ResultFile("language_svd", "language_space", "svd"))


def language_space_summary(similarity: pl.DataFrame) -> pl.DataFrame:
    """Per condition: mean cosine between different languages' centroids at the first, middle and last layer."""
    cross = (
        similarity.filter(pl.col("language_a") != pl.col("language_b"))
        .group_by("condition", "layer")
        .agg(pl.col("cosine").mean())
        .sort("condition", "layer")
    )
    last = cross["layer"].max()
    rows = []
    for (condition,), part in cross.group_by("condition", maintain_order=True):
        values = dict(zip(part["layer"], part["cosine"], strict=True))
        decoder = {layer: value for layer, value in values.items() if layer >= 0}  # -1: the embedding output
        # polars types a Series aggregate (``last``) as any Python value (here an int): hence the ignore.
        rows.append({"condition": condition, "embedding": values.get(-1), "first_layer": values[0],
                     "middle_layer": values[last // 2], "last_layer": values[last],  # type: ignore[operator]
                     "peak_layer": max(decoder, key=decoder.__getitem__)})  # fmt: skip
    return pl.DataFrame(rows, schema_overrides={"embedding": pl.Float64})


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
    """2-D PCA of last-token states of every language at chosen layers, one row per condition (normal, or
    each L2's own transfer neurons deactivated; English never)."""
    return (
        alt.Chart(projection)
        .mark_circle(size=14, opacity=0.6)
        .encode(x=alt.X("pc1:Q", title="PC 1"), y=alt.Y("pc2:Q", title="PC 2"), color=alt.Color("language:N"))
        .properties(width=160, height=160)
        .facet(row=alt.Row("condition:N", title=None), column=alt.Column("layer:O", title="layer"))
        .resolve_scale(x="independent", y="independent")
        .properties(title=title)
    )


def pca_numbers(tables: Tables, context: FigureContext) -> pl.DataFrame:
    return (
        tables["language_pca"]
        .group_by("condition", "layer", "language")
        .len("points")
        .sort("condition", "layer", "language")
    )


def language_svd_summary(dimensions: pl.DataFrame) -> pl.DataFrame:
    """Per language and variance threshold: the components the states need at the embedding output
    (null without it), the first, middle and last layer, and the fewest over the decoder layers with
    the layer where that is reached (the first such layer)."""
    rows = []
    decoder_layers = dimensions.filter(pl.col("layer") >= 0)["layer"]
    last = decoder_layers.max()
    for (language, threshold), part in dimensions.group_by("language", "threshold", maintain_order=True):
        values = dict(zip(part["layer"], part["components"], strict=True))
        decoder = {layer: count for layer, count in sorted(values.items()) if layer >= 0}
        fewest = min(decoder, key=decoder.__getitem__)
        # polars types a Series aggregate (``last``) as any Python value (here an int): hence the ignore.
        rows.append({"language": language, "threshold": threshold, "sentences": part["sentences"].max(),
                     "embedding": values.get(-1), "first_layer": values[0], "middle_layer": values[last // 2],  # type: ignore[operator]
                     "last_layer": values[last], "fewest": decoder[fewest], "fewest_layer": fewest})  # fmt: skip
    return pl.DataFrame(rows, schema_overrides={"embedding": pl.Int64})


def language_svd_chart(dimensions: pl.DataFrame, title: str) -> alt.FacetChart:
    """Components for 90, 95 and 99 % of the squared norm of each language's states, per layer."""
    return (
        alt.Chart(dimensions)
        .mark_line(point=True)
        .encode(
            x=alt.X("layer:Q", title="layer (-1: embedding output)", axis=alt.Axis(format="d", tickMinStep=1)),
            y=alt.Y("components:Q", title="singular directions"),
            color=alt.Color("language:N"),
            tooltip=["language:N", "layer:Q", "threshold:Q", "components:Q", "sentences:Q"],
        )
        .properties(width=220, height=180)
        .facet(column=alt.Column("threshold:O", title="share of the squared norm"))
        .resolve_scale(y="independent")
        .properties(title=title)
    )


TABLES.register(
    SummaryTable(
        "language_space_summary",
        ("language_space",),
        lambda results, settings: language_space_summary(results["language_space"]),
    )
)
TABLES.register(SummaryTable("language_pca", ("language_pca",), lambda results, settings: results["language_pca"]))
TABLES.register(
    SummaryTable(
        "language_svd_summary",
        ("language_svd",),
        lambda results, settings: language_svd_summary(results["language_svd"]),
    )
)
FIGURES.register(
    Figure(
        "language_space",
        MODEL_SCOPE,
        language_space_chart,
        "Language centroids converge in the middle layers and separate again near the output.",
        inputs=("language_space",),
        prepare=lambda results, context: results["language_space"],
        numbers=lambda tables, context: rounded(tables["language_space_summary"]),
    )
)
FIGURES.register(
    Figure(
        "language_pca",
        MODEL_SCOPE,
        language_pca_chart,
        "2-D PCA of every language's last-token states per layer, fit on all languages together, under each "
        "condition (normal, or each L2's own transfer neurons deactivated; English never). The paper: in the "
        "middle layers the languages overlap; near the output they separate, and with the Type-2 neurons "
        "deactivated (its layers 21-32 of 32) they stay closer together.",
        inputs=("language_pca",),
        prepare=lambda results, context: results["language_pca"],
        numbers=pca_numbers,
    )
)
FIGURES.register(
    Figure(
        "language_svd",
        MODEL_SCOPE,
        language_svd_chart,
        "How many singular directions each language's last-token states need for 90, 95 and 99 % of their "
        "squared norm (uncentred SVD of the [sentences, d_model] states, as the paper's svd.py), per layer; "
        "-1 is the embedding output. Bounded by the number of sentences. Fewer directions: the states of the "
        "language lie in a lower-dimensional subspace.",
        table="language_svd_summary",
        inputs=("language_svd",),
        prepare=lambda results, context: results["language_svd"],
        numbers=lambda tables, context: tables["language_svd_summary"],
    )
)

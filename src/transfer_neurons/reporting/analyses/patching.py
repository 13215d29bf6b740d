"""Activation patching: do the Type-1 neurons' values carry what deactivating them removes?

The recovery ``(patched - corrupted) / (clean - corrupted)`` is a ratio of two means over the test
pairs; its interval resamples the pairs (numerator and denominator together), and where the
denominator's own interval includes 0 the ratio is no number to read. The interchange claim is
judged against the patch that carries no sentence-specific content: the same neurons' training-mean
values (English-values recovery minus mean-values recovery, paired by pair).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from transfer_neurons.evaluation.statistics import bootstrap_mean_ci
from transfer_neurons.lazy import lazy_import
from transfer_neurons.names import TRANSFER_SET
from transfer_neurons.reporting.claims import Case, Finding, interval
from transfer_neurons.reporting.numbers import rounded
from transfer_neurons.reporting.registry import (
    CLAIMS,
    FIGURES,
    MODEL_SCOPE,
    RESULTS,
    TABLES,
    Claim,
    ClaimSettings,
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

RESULTS.register(ResultFile("patching", "evaluate_patching", "table"))
RESULTS.register(ResultFile("patching_pairs", "evaluate_patching", "pairs"))

RECOVERY_KEYS = ["model", "language", "neuron_set", "metric"]


def patching_summary(patching: pl.DataFrame) -> pl.DataFrame:
    """Per language, neuron set, source, scope and patched layer: the recovery of the layer-mean
    alignment, ``(patched - corrupted) / (clean - corrupted)`` of each metric averaged over layers."""
    runs = patching.filter(pl.col("source").is_not_null())
    keys = ["model", "language", "neuron_set", "source", "scope", "patched_layer", "metric"]
    means = runs.group_by(keys).agg(pl.col("value").mean(), pl.col("clean").mean(), pl.col("corrupted").mean())
    gap = pl.col("clean") - pl.col("corrupted")
    # Where deactivation changed nothing there is nothing to recover: recovery is undefined (null).
    recovery = pl.when(gap.abs() > 1e-9).then((pl.col("value") - pl.col("corrupted")) / gap).otherwise(None)
    return means.with_columns(recovery.alias("recovery")).sort(keys)


def resampled_means(values: np.ndarray, resamples: int, seed: int = 0) -> np.ndarray:
    """The means of ``values`` [n] over ``resamples`` bootstrap resamples -> [resamples]: the same draws
    as ``bootstrap_mean_ci`` with the same seed, so that parts resampled with it are resampled together."""
    rng = np.random.default_rng(seed)
    indices = rng.integers(0, len(values), size=(resamples, len(values)))
    return values[indices].mean(axis=1)


def ratio_ci(numerator: np.ndarray, denominator: np.ndarray, resamples: int) -> tuple[float | None, ...]:
    """``mean(numerator) / mean(denominator)`` of per-pair values [n], and its percentile 95 % interval
    with both resampled over the same pairs; the interval is None where the denominator's includes 0."""
    _, low, high = bootstrap_mean_ci(denominator, resamples)
    ratio = float(numerator.mean() / denominator.mean()) if denominator.mean() != 0 else None
    if low <= 0 <= high:
        return ratio, None, None
    # A resample whose denominator is 0 has no ratio; at most 2.5 % of them can, as its interval excludes 0.
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = resampled_means(numerator, resamples) / resampled_means(denominator, resamples)
    ratio_low, ratio_high = np.nanpercentile(np.where(np.isfinite(ratios), ratios, np.nan), [2.5, 97.5])
    return ratio, float(ratio_low), float(ratio_high)


def patching_recovery(pairs: pl.DataFrame, resamples: int) -> pl.DataFrame:
    """Per language, neuron set, metric and source, with every layer of the set patched (cumulative up to
    its last layer), over the test pairs: the gap ``clean - corrupted`` with its bootstrap 95 % CI, the
    recovery with its CI (null where the gap's CI includes 0), and the recovery minus the mean-value
    patch's (``beyond_mean``, paired by pair) with its CI; ``n_pairs``.

    ``pairs`` is the per-pair patching table (each pair's alignment averaged over layers).
    """
    last = pl.col("patched_layer") == pl.col("patched_layer").max().over("language", "neuron_set")
    rows_all = pairs.filter((pl.col("scope") == "cumulative") & last)
    rows = []
    for keys, part in rows_all.group_by(*RECOVERY_KEYS, maintain_order=True):
        by_source = {source: frame.sort("pair") for (source,), frame in part.group_by("source")}
        any_source = next(iter(by_source.values()))
        corrupted = any_source["corrupted"].to_numpy()
        gap = any_source["clean"].to_numpy() - corrupted
        gap_mean, gap_low, gap_high = bootstrap_mean_ci(gap, resamples)
        mean_lift = by_source["mean"]["value"].to_numpy() - corrupted if "mean" in by_source else None
        for source, frame in sorted(by_source.items()):
            lift = frame["value"].to_numpy() - corrupted
            recovery, low, high = ratio_ci(lift, gap, resamples)
            beyond: tuple[float | None, ...] = (None, None, None)
            if mean_lift is not None and source != "mean":
                beyond = ratio_ci(lift - mean_lift, gap, resamples)
            rows.append({**dict(zip(RECOVERY_KEYS, keys, strict=True)), "source": source,
                         "patched_layer": frame["patched_layer"][0], "gap": gap_mean, "gap_ci_low": gap_low,
                         "gap_ci_high": gap_high, "recovery": recovery, "recovery_ci_low": low,
                         "recovery_ci_high": high, "beyond_mean": beyond[0], "beyond_mean_ci_low": beyond[1],
                         "beyond_mean_ci_high": beyond[2], "n_pairs": len(gap)})  # fmt: skip
    schema = {column: pl.Float64 for column in ("recovery", "recovery_ci_low", "recovery_ci_high", "beyond_mean",
                                                "beyond_mean_ci_low", "beyond_mean_ci_high")}  # fmt: skip
    return pl.DataFrame(rows, schema_overrides=schema, infer_schema_length=None).sort(*RECOVERY_KEYS, "source")


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


def every_layer_patched(summary: pl.DataFrame) -> pl.DataFrame:
    """Rows of mutual k-NN recovery with every layer of the set patched (cumulative, up to its last layer)."""
    rows = summary.filter((pl.col("metric") == "mutual_knn") & (pl.col("scope") == "cumulative"))
    return rows.filter(pl.col("patched_layer") == pl.col("patched_layer").max().over("language", "neuron_set"))


def patching_numbers(tables: Tables, context: FigureContext) -> pl.DataFrame:
    """Mutual k-NN recovery with every layer of the set patched, per source, with its 95 % CI over the
    test pairs (``n_pairs``) where the recovery table is there."""
    if "patching_recovery" not in tables:
        wide = every_layer_patched(tables["patching_summary"]).pivot(
            on="source", index=["language", "neuron_set"], values="recovery"
        )
        return rounded(wide.sort("language", "neuron_set"))
    rows = tables["patching_recovery"].filter(pl.col("metric") == "mutual_knn")
    shown = rows.with_columns(
        pl.Series("recovery_text", [recovery_text(row) for row in rows.iter_rows(named=True)], dtype=pl.String)
    )
    wide = shown.pivot(on="source", index=["language", "neuron_set", "n_pairs"], values="recovery_text")
    return wide.sort("language", "neuron_set")


def recovery_text(row: dict, column: str = "recovery") -> str:
    value, low, high = row[column], row[f"{column}_ci_low"], row[f"{column}_ci_high"]
    if value is None:
        return "undefined"
    return f"{value:.2f}" if low is None else f"{value:.2f} [{low:.2f}, {high:.2f}]"


def interchange(tables: Tables, context: FigureContext) -> Finding | None:
    """The Type-1 neurons' English values restore more of the mutual k-NN alignment than their
    training-mean values do (every layer of the set patched): recovery with English values minus with
    mean values, per language, with its CI over pairs. A case whose gap (clean - corrupted) has an
    interval that includes 0 is inconclusive: deactivation removed nothing measurable to restore."""
    recovery = tables.get("patching_recovery")
    if recovery is None:
        return None
    rows = recovery.filter(pl.col("metric") == "mutual_knn")
    transfer = rows.filter(pl.col("neuron_set") == TRANSFER_SET)
    controls = rows.filter((pl.col("neuron_set") != TRANSFER_SET) & (pl.col("source") == "english"))
    control_of = {row["language"]: row for row in controls.iter_rows(named=True)}
    cases = []
    for (lang,), part in transfer.sort("language").group_by("language", maintain_order=True):
        by_source = {row["source"]: row for row in part.iter_rows(named=True)}
        english, mean = by_source.get("english"), by_source.get("mean")
        if english is None or mean is None:
            cases.append(Case(lang, None, None, None, 0, undecidable="no English or mean-value patch"))
            continue
        gap = interval(english["gap"], english["gap_ci_low"], english["gap_ci_high"])
        shown = [f"English {recovery_text(english)}", f"mean values {recovery_text(mean)}", f"clean - corrupted {gap}"]
        if (control := control_of.get(lang)) is not None:
            shown.append(f"control set ({control['neuron_set']}) English values {recovery_text(control)}")
        undecidable = ""
        if english["gap_ci_low"] <= 0 <= english["gap_ci_high"]:
            undecidable = "the gap's interval includes 0: deactivation removed nothing measurable to restore"
        cases.append(Case(lang, english["beyond_mean"], english["beyond_mean_ci_low"], english["beyond_mean_ci_high"],
                          english["n_pairs"], ", ".join(shown), undecidable))  # fmt: skip
    return Finding("the same neurons' training-mean values", tuple(cases))


TABLES.register(
    SummaryTable(
        "patching_summary",
        ("patching",),
        lambda results, settings: patching_summary(results["patching"]),
        requires="patching",
    )
)
TABLES.register(
    SummaryTable(
        "patching_recovery",
        ("patching_pairs",),
        lambda results, settings: patching_recovery(results["patching_pairs"], settings.resamples),
        requires="patching",
    )
)
FIGURES.register(
    Figure(
        "patching",
        MODEL_SCOPE,
        patching_chart,
        "Beyond the paper: activation patching. The Type-1 neurons are deactivated at the last token (the "
        "corrupted run), then their activations are written back, one layer's at a time (single) or every "
        "layer's up to that one (cumulative), from the clean L2 run (restoration), the English run of the "
        "same pair (interchange) or their training mean. Recovery 1 is the clean alignment, 0 the corrupted "
        "one. The control set's patching says what neurons of the same sizes give back. The table gives the "
        "recovery with every layer patched and its 95 % CI over the test pairs (n_pairs), which is empty "
        "where the gap between clean and corrupted has an interval that includes 0.",
        table="patching_summary",
        numbers=patching_numbers,
        requires="patching",
    )
)
CLAIMS.register(
    Claim(
        "interchange",
        "The Type-1 neurons' English values carry what deactivation removes (interchange)",
        "beyond the paper",
        interchange,
        settings=ClaimSettings(
            effect="recovery with the English values minus recovery with the training-mean values (mutual k-NN)",
            side=+1,
            smallest_effect=0.20,
            unit="pairs",
            controls="the same neurons' training-mean values (decides); a magnitude-matched set's English values",
            why="a fifth of what deactivation removed",
            size_option="evaluation.patching.max_pairs",
        ),
    )
)

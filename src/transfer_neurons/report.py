"""The HTML report: every figure with a caption saying what the paper found and what this run measured."""

from __future__ import annotations

import html
from collections.abc import Mapping
from pathlib import Path

import polars as pl

PAPER_FINDINGS = {
    "layer_distribution": "The paper finds Type-1 neurons in the early-to-middle layers and Type-2 neurons "
    "concentrated in the final layers.",
    "score_profile": "Scores measure how far one neuron's write moves the last-token state toward the "
    "shared (Type-1) or language-specific (Type-2) centroid.",
    "qa_f1": "The paper reports that deactivating the top-1000 Type-1 neurons collapses multilingual QA "
    "(MKQA) while as many random neurons barely change it.",
    "knn_alignment": "The paper reports that mutual k-NN alignment of English and L2 states rises through the "
    "middle layers and drops when Type-1 neurons are deactivated, but not for random neurons.",
    "state_similarity": "Parallel English-L2 pairs are far more similar than non-parallel pairs in the middle "
    "layers (the shared semantic space); deactivating Type-1 neurons narrows the gap.",
    "activation_similarity": "MLP activation patterns of parallel pairs are more similar than of non-parallel "
    "pairs, showing shared neurons process the same meaning across languages.",
    "language_space": "Language centroids converge in the middle layers and separate again near the output.",
    "language_pca": "In the middle layers the languages overlap; at the first and last layers they form "
    "separate clusters.",
    "specificity": "The paper finds Type-2 neurons more language-specific (higher eta^2) than Type-1 neurons.",
    "attention_shift": "Beyond the paper: how the last token's attention changes when neurons are deactivated.",
    "attention_example": "Head-averaged attention of the last token over the first test sentence's tokens.",
    "detector_agreement": "Beyond the paper: how many of the centroid detector's top-N neurons the correlation "
    "detector also finds, per layer.",
    "dose_response": "Beyond the paper: alignment and QA as the number of deactivated neurons grows.",
}


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


def qa_measured(summary: pl.DataFrame) -> str:
    parts = []
    for lang, rows in summary.group_by("language", maintain_order=True):
        by_group = {row["group"]: row for row in rows.iter_rows(named=True)}
        if "normal" not in by_group:
            continue
        text = f"{lang[0]}: F1 {by_group['normal']['f1']:.3f} normally"
        for kind in ("type1", "type2"):
            row = by_group.get(kind)
            if row and row.get("diff_vs_random") is not None:
                text += (
                    f"; {kind} deactivated {row['f1']:.3f} (vs random: {row['diff_vs_random']:+.3f}, "
                    f"95 % CI {row['diff_ci_low']:+.3f} to {row['diff_ci_high']:+.3f})"
                )
        parts.append(text)
    return "This run: " + ". ".join(parts) + "." if parts else ""


def layer_mean_measured(table: pl.DataFrame, metric: str) -> str:
    parts = []
    for lang, rows in table.group_by("language", maintain_order=True):
        values = dict(zip(rows["group"], rows[metric], strict=True))
        listed = ", ".join(f"{group} {values[group]:.3f}" for group in ("normal", "type1", "type2", "random_type1")
                           if group in values)  # fmt: skip
        parts.append(f"{lang[0]}: {listed}")
    return f"This run, {metric} averaged over layers: " + "; ".join(parts) + "."


def detection_measured(table: pl.DataFrame, detector: str) -> str:
    rows = table.filter(pl.col("detector") == detector)
    parts = [
        f"{row['language']} {row['type']}: N = {row['top_n']}, median layer {row['median_layer']:.0f}"
        for row in rows.iter_rows(named=True)
    ]
    return "This run: " + "; ".join(parts) + "."


def gap_measured(table: pl.DataFrame, prefix: str) -> str:
    normal = table.filter(pl.col("group") == "normal")
    parts = [
        f"{row['language']}: parallel {row[prefix + 'parallel']:.3f} vs non-parallel {row[prefix + 'non_parallel']:.3f}"
        for row in normal.iter_rows(named=True)
    ]
    return "This run, normal condition, averaged over layers: " + "; ".join(parts) + "."


def language_space_measured(table: pl.DataFrame) -> str:
    parts = [
        f"{row['condition']}: first layer {row['first_layer']:.3f}, middle {row['middle_layer']:.3f}, "
        f"last {row['last_layer']:.3f} (highest at layer {row['peak_layer']})"
        for row in table.iter_rows(named=True)
    ]
    return "This run, mean cosine between different languages' centroids: " + "; ".join(parts) + "."


def attention_measured(table: pl.DataFrame) -> str:
    parts = [
        f"{row['condition']}: mean JS {row['mean_js']:.4f}, max {row['max_js']:.4f} (layer {row['max_layer']})"
        for row in table.iter_rows(named=True)
    ]
    return "This run, over layers, heads and languages: " + "; ".join(parts) + "."


def agreement_measured(table: pl.DataFrame) -> str:
    parts = [
        f"{row['type']}: {row['shared_share']:.2f} of the centroid detector's top-N"
        for row in table.iter_rows(named=True)
    ]
    return "This run, share also found by the correlation detector: " + "; ".join(parts) + "."


def dose_measured(table: pl.DataFrame, knn_metric: str) -> str:
    largest = table.filter(pl.col("top_n") == pl.col("top_n").max().over("language", "neuron_type"))
    means = largest.group_by("neuron_type", "kind").agg(pl.col(knn_metric).mean(), pl.col("top_n").first())
    parts = [
        f"{row['neuron_type']} {row['kind']} at N = {row['top_n']}: {row[knn_metric]:.3f}"
        for row in means.sort("neuron_type", "kind").iter_rows(named=True)
    ]
    return f"This run, {knn_metric} averaged over layers and languages: " + "; ".join(parts) + "."


def pca_measured(projection: pl.DataFrame) -> str:
    counts = projection.group_by("language").len().sort("language")
    listed = ", ".join(f"{lang} {n}" for lang, n in counts.iter_rows())
    layers = ", ".join(str(layer) for layer in sorted(projection["layer"].unique()))
    return f"This run: layers {layers}; points per language over all layers: {listed}."


def measured_texts(tables: Mapping[str, pl.DataFrame], knn_metric: str) -> dict[str, tuple[str, str]]:
    """Figure name -> (sentence with this run's numbers, HTML table)."""
    alignment = tables["alignment_summary"]
    texts = {
        "qa_f1": (qa_measured(tables["qa_summary"]), _table_html(tables["qa_summary"])),
        "knn_alignment": (layer_mean_measured(alignment, knn_metric), _table_html(alignment)),
        "state_similarity": (gap_measured(alignment, "state_cosine_"), ""),
        "activation_similarity": (gap_measured(alignment, "activation_cosine_"), ""),
        "language_space": (language_space_measured(tables["language_space_summary"]), ""),
        "language_pca": (pca_measured(tables["language_pca"]), ""),
        "specificity": (
            specificity_measured(tables["specificity_summary"]),
            _table_html(tables["specificity_summary"]),
        ),
        "attention_shift": (attention_measured(tables["attention_summary"]), ""),
        "attention_example": ("", ""),
        "dose_response": (dose_measured(tables["dose_summary"], knn_metric), _table_html(tables["dose_summary"])),
    }
    if "agreement_summary" in tables:
        texts["detector_agreement"] = (agreement_measured(tables["agreement_summary"]), "")
    return texts


def model_sections(
    figures: list[Path], tables: Mapping[str, pl.DataFrame], report_dir: Path, knn_metric: str
) -> list[str]:
    """HTML sections for one model: every figure with its caption and this run's numbers."""
    measured = measured_texts(tables, knn_metric)
    sections = []
    for png in figures:
        name, group = Path(png).stem, Path(png).parent.name
        if name in ("layer_distribution", "score_profile"):
            text, table = detection_measured(tables["detection_summary"], group), ""
        else:
            text, table = measured.get(name, ("", ""))
        sections.append(figure_section(name, Path(png), report_dir, text, table, group=group))
    return sections


def specificity_measured(summary: pl.DataFrame) -> str:
    by_type = summary.group_by("type").agg(pl.col("share_eta_0.1_p_0.05").mean(), pl.col("share_eta_0.25").mean())
    parts = [
        f"{row['type']}: {row['share_eta_0.1_p_0.05']:.2f} with eta^2 > 0.1 and p < 0.05, "
        f"{row['share_eta_0.25']:.2f} with eta^2 > 0.25"
        for row in by_type.sort("type").iter_rows(named=True)
    ]
    return "This run (mean over languages): " + "; ".join(parts) + "."


def figure_section(name: str, png: Path, report_dir: Path, measured: str = "", table: str = "", group: str = "") -> str:
    """One figure with its caption (paper finding, then measured numbers) and an optional table."""
    relative = Path(png).resolve().relative_to(report_dir.resolve())
    caption = html.escape(PAPER_FINDINGS.get(name, ""))
    heading = html.escape(f"{name.replace('_', ' ')} ({group})" if group else name.replace("_", " "))
    return (
        f"<figure><img src='{html.escape(str(relative))}' alt='{html.escape(name)}'>"
        f"<figcaption><b>{heading}.</b> {caption} {html.escape(measured)}</figcaption>"
        f"{table}</figure>"
    )


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

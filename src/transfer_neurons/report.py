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
        listed = ", ".join(f"{group} {values[group]:.3f}" for group in values)
        parts.append(f"{lang[0]}: {listed}")
    return f"This run, {metric} averaged over layers: " + "; ".join(parts) + "."


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


def table_section(frame: pl.DataFrame) -> str:
    return _table_html(frame)


def summary_tables(results: Mapping[str, list[str]], *, main_label: str, resamples: int) -> dict[str, pl.DataFrame]:
    """The report's tables, from the evaluation results of one model."""
    from transfer_neurons import summaries

    def read(kind: str) -> pl.DataFrame:
        return pl.concat([pl.read_parquet(path) for path in results[kind]], how="diagonal_relaxed")

    by_group = summaries.metric_by_group(read("states"), main_label)
    knn_metric = sorted(metric for metric in by_group["metric"].unique() if metric.startswith("mutual_knn"))[0]
    alignment = summaries.layer_mean(by_group, knn_metric).join(
        summaries.layer_mean(by_group, "state_cosine_parallel"), on=["model", "language", "group"]
    )
    return {
        "qa_summary": summaries.qa_summary(read("qa"), main_label, resamples),
        "alignment_summary": alignment,
        "specificity_summary": summaries.specificity_summary(read("specificity")),
    }


def model_sections(figures: Mapping[str, Path], tables: Mapping[str, pl.DataFrame], report_dir: Path) -> list[str]:
    """HTML sections for one model: detection figures, then every evaluation figure with numbers."""
    alignment = tables["alignment_summary"]
    knn_metric = next(column for column in alignment.columns if column.startswith("mutual_knn"))
    measured = {
        "qa_f1": (qa_measured(tables["qa_summary"]), _table_html(tables["qa_summary"])),
        "knn_alignment": (layer_mean_measured(alignment, knn_metric), _table_html(alignment)),
        "state_similarity": (layer_mean_measured(alignment, "state_cosine_parallel"), ""),
        "specificity": (
            specificity_measured(tables["specificity_summary"]),
            _table_html(tables["specificity_summary"]),
        ),
    }
    sections = []
    for png in figures:
        figure_name = Path(png).stem
        text, table = measured.get(figure_name, ("", ""))
        sections.append(figure_section(figure_name, Path(png), report_dir, text, table, group=Path(png).parent.name))
    return sections

"""The neuron browser: a static site of every transfer neuron, to open from disk with no network.

``reports/neurons/{model}/index.html`` lists every neuron of every language's main top-N list
(per type and detector) in one table a reader sorts and filters, beside how the languages' lists
overlap; ``n/{layer}_{neuron}.html`` is one neuron's page: its scores and ranks in every language,
its mean last-token activation by language, its LAPE entropy and membership, its top-activating
test sentences token by token, and what its write vector promotes and suppresses.

The pages come from the workflow's tables (``load_browser_data``) through two templates in
``neuron_browser_assets/`` (index and neuron page), with the CSS and JS of that folder inlined into
each page, so a page never requests anything. Charts are inline SVG drawn here. Every text that comes
from data goes through ``esc`` (sentences hold <, & and quotes).
"""

from __future__ import annotations

import html
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING, Any

from transfer_neurons.data.tidy import read_tables
from transfer_neurons.lazy import lazy_import

if TYPE_CHECKING:
    import polars as pl
else:
    pl = lazy_import("polars")
log = logging.getLogger(__name__)

ASSETS = "neuron_browser_assets"
PAGES_DIR = "n"
INDEX_FILE = "index.html"
SPECIFICITY_GROUPING = "language"  # eta^2 of a language's sentences against all others'


@dataclass(frozen=True)
class BrowserSettings:
    """``main_label``: the top-N label the site lists; ``max_pages``: neuron pages at most (``None``: all)."""

    main_label: str
    pivot: str = "en"
    max_pages: int | None = 200

    def __post_init__(self) -> None:
        if self.max_pages is not None and self.max_pages < 0:
            raise ValueError(f"evaluation.browser.max_pages must be >= 0 or null, got {self.max_pages}")


@dataclass
class BrowserData:
    """The tables a site is drawn from (polars frames; ``lape`` and ``specificity`` may be empty).

    * ``top``: the main top-N lists: detector, language, neuron_type, layer, neuron, score, rank
    * ``scores``: the listed neurons' scores in every language, their type's row only: detector,
      language, neuron_type, layer, neuron, score, rank
    * ``lape``: LAPE neurons: language, layer, neuron
    * ``specificity``: eta^2 per language: language, layer, neuron, eta_squared
    * ``profiles``: per neuron and text language: mean_activation, lape_probability, lape_entropy
    * ``tokens``: the top sentences token by token (``evaluation.neuron_tokens``)
    * ``lens``: promoted and suppressed tokens: layer, neuron, direction, rank, token, text, logit
    """

    model: str
    languages: list[str]
    top: pl.DataFrame
    scores: pl.DataFrame
    lape: pl.DataFrame
    specificity: pl.DataFrame
    profiles: pl.DataFrame
    tokens: pl.DataFrame
    lens: pl.DataFrame


# --- tables ---------------------------------------------------------------------------------------


def load_browser_data(
    *, model: str, languages: Sequence[str], main_label: str, top_lists: Sequence[Path], scores: Sequence[Path],
    tokens: Sequence[Path], lens: Path, profiles: Path, lape: Path | None = None, specificity: Path | None = None,
) -> BrowserData:  # fmt: skip
    """Read the workflow's tables for one model (file lists of any languages and detectors)."""
    top = (
        read_tables(top_lists)
        .filter(pl.col("top_n_label") == str(main_label))
        .select("detector", "language", "neuron_type", "layer", "neuron", "score", "rank")
    )
    if top.is_empty():
        raise ValueError(f"the top-N lists {list(map(str, top_lists))} have no neuron labelled {main_label!r}")
    listed = top.select("layer", "neuron").unique()
    score_rows = (
        pl.concat([pl.scan_parquet(path) for path in scores], how="diagonal_relaxed")
        .filter(pl.col("candidate"))
        .join(listed.lazy(), on=["layer", "neuron"], how="semi")
        .select("detector", "language", "neuron_type", "layer", "neuron", "score", "rank")
        .collect()
    )
    lape_rows = (
        pl.read_parquet(lape).select("language", "layer", "neuron")
        if lape
        else pl.DataFrame(schema={"language": pl.String, "layer": pl.Int32, "neuron": pl.Int32})
    )
    eta = (
        pl.read_parquet(specificity)
        .filter(pl.col("grouping") == SPECIFICITY_GROUPING)
        .select("language", "layer", "neuron", "eta_squared")
        .unique(subset=["language", "layer", "neuron"], keep="first")
        if specificity
        else pl.DataFrame(
            schema={"language": pl.String, "layer": pl.Int32, "neuron": pl.Int32, "eta_squared": pl.Float64}
        )
    )
    return BrowserData(
        model=model, languages=list(languages), top=top, scores=score_rows, lape=lape_rows, specificity=eta,
        profiles=pl.read_parquet(profiles), tokens=read_tables(tokens), lens=pl.read_parquet(lens),
    )  # fmt: skip


def index_rows(data: BrowserData) -> pl.DataFrame:
    """One row per (detector, language, type, neuron) of the top-N lists, with eta^2, the LAPE languages
    it belongs to (``lape``, comma-separated) and in how many languages it is listed (``n_languages``,
    for that detector and type), sorted by detector, language (in ``data.languages`` order), type and rank."""
    key = ["detector", "neuron_type", "layer", "neuron"]
    spread = data.top.group_by(key).agg(pl.col("language").n_unique().alias("n_languages"))
    lape = data.lape.group_by("layer", "neuron").agg(pl.col("language").sort().str.join(", ").alias("lape"))
    order = {lang: position for position, lang in enumerate(data.languages)}
    language_order = pl.col("language").replace_strict(order, default=len(order), return_dtype=pl.Int32)
    return (
        data.top.join(spread, on=key, how="left")
        .join(data.specificity, on=["language", "layer", "neuron"], how="left")
        .join(lape, on=["layer", "neuron"], how="left")
        .with_columns(pl.col("lape").fill_null(""))
        .sort(pl.col("detector"), language_order, pl.col("language"), pl.col("neuron_type"), pl.col("rank"))
    )


def page_neurons(index: pl.DataFrame, max_pages: int | None) -> pl.DataFrame:
    """The neurons that get a page (layer, neuron, best_rank, n_languages), best first: the best rank in
    any list, then listed in more languages, then by layer and index; ``max_pages`` of them at most."""
    ordered = (
        index.group_by("layer", "neuron")
        .agg(pl.col("rank").min().alias("best_rank"), pl.col("n_languages").max())
        .sort(["best_rank", "n_languages", "layer", "neuron"], descending=[False, True, False, False])
    )
    return ordered if max_pages is None else ordered.head(max_pages)


def layer_neighbours(pages: pl.DataFrame) -> dict[tuple[int, int], tuple[tuple[int, int] | None, ...]]:
    """(layer, neuron) -> (previous, next) neuron with a page in the same layer, by neuron index."""
    neighbours: dict[tuple[int, int], tuple[tuple[int, int] | None, ...]] = {}
    for (layer,), group in pages.sort("layer", "neuron").group_by("layer", maintain_order=True):
        units = group["neuron"].to_list()
        for position, unit in enumerate(units):
            before = (layer, units[position - 1]) if position > 0 else None
            after = (layer, units[position + 1]) if position + 1 < len(units) else None
            neighbours[(layer, unit)] = (before, after)
    return neighbours


def overlap_counts(top: pl.DataFrame, languages: Sequence[str]) -> dict[tuple[str, str], list[list[int]]]:
    """(detector, type) -> [languages x languages] counts of neurons in both languages' lists."""
    counts = {}
    for (detector, neuron_type), group in top.group_by("detector", "neuron_type", maintain_order=True):
        sets = {
            lang: set(group.filter(pl.col("language") == lang).select("layer", "neuron").rows()) for lang in languages
        }
        counts[(detector, neuron_type)] = [[len(sets[a] & sets[b]) for b in languages] for a in languages]
    return dict(sorted(counts.items()))


def language_spread(top: pl.DataFrame, n_languages: int) -> dict[tuple[str, str], list[int]]:
    """(detector, type) -> how many neurons are listed in exactly 1, 2, ..., ``n_languages`` languages."""
    spread = {}
    for (detector, neuron_type), group in top.group_by("detector", "neuron_type", maintain_order=True):
        per_neuron = group.group_by("layer", "neuron").agg(pl.col("language").n_unique().alias("listed_in"))
        tally = dict(per_neuron.group_by("listed_in").len().rows())
        spread[(detector, neuron_type)] = [tally.get(k, 0) for k in range(1, n_languages + 1)]
    return dict(sorted(spread.items()))


# --- HTML pieces -----------------------------------------------------------------------------------


def esc(value: object) -> str:
    """Text for HTML content and quoted attributes: <, >, &, " and ' escaped."""
    return html.escape("" if value is None else str(value), quote=True)


def is_missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def number(value: Any, digits: int = 4) -> str:
    """A number to show: ``digits`` significant digits; an em dash where there is none."""
    if is_missing(value):
        return "—"
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}g}"


def cell(value: Any, text: str | None = None, numeric: bool = False) -> str:
    """A table cell; numeric cells carry their exact value in data-v for sorting."""
    shown = number(value) if text is None else text
    if numeric:
        sort_value = "" if is_missing(value) else repr(float(value))
        return f"<td class='num' data-v='{esc(sort_value)}'>{esc(shown)}</td>"
    return f"<td>{esc(shown)}</td>"


def header_row(columns: Sequence[tuple[str, bool]]) -> str:
    """``columns``: (title, numeric) pairs."""
    cells = "".join(
        f"<th scope='col'{' data-kind=num' if numeric else ''}>{esc(title)}</th>" for title, numeric in columns
    )
    return f"<thead><tr>{cells}</tr></thead>"


def page_name(layer: int, neuron: int) -> str:
    return f"{layer}_{neuron}.html"


def neuron_label(layer: int, neuron: int) -> str:
    return f"L{layer}.{neuron}"


def type_label(neuron_type: str) -> str:
    return {"type1": "Type-1", "type2": "Type-2"}.get(neuron_type, neuron_type)


def bar_chart_svg(
    labels: Sequence[str], values: Sequence[float | None], *, title: str, axis_title: str = "", value_digits: int = 3
) -> str:
    """Vertical bars from a zero line (negative values point down), one ``rect.bar`` per value, with the
    value above (below) each bar and its label under the plot. A missing value draws no bar."""
    slot, bar_width, left = 52, 38, 20
    plot_top, plot_height = 20, 130
    width = left + slot * len(labels) + 10
    height = plot_top + plot_height + (48 if axis_title else 32)
    finite = [float(v) for v in values if v is not None and not is_missing(v)] or [0.0]
    top, bottom = max(max(finite), 0.0), min(min(finite), 0.0)
    span = (top - bottom) or 1.0

    def y_of(value: float) -> float:
        return plot_top + (top - value) / span * plot_height

    zero, plot_bottom = y_of(0.0), plot_top + plot_height
    parts = [
        f"<svg class='chart' xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
        f"viewBox='0 0 {width} {height}' role='img' aria-label='{esc(title)}'><title>{esc(title)}</title>",
        f"<line class='axis' x1='{left - 6}' x2='{width - 6}' y1='{zero:.1f}' y2='{zero:.1f}'/>",
    ]
    for index, (label, value) in enumerate(zip(labels, values, strict=True)):
        x = left + slot * index
        middle = x + bar_width / 2
        if value is not None and not is_missing(value):
            y_value, shown = y_of(float(value)), esc(number(value, value_digits))
            y, bar_height = min(y_value, zero), max(abs(y_value - zero), 0.5)
            negative = float(value) < 0
            text_y = y + bar_height + 12 if negative else y - 4
            parts.append(
                f"<rect class='bar{' negative' if negative else ''}' data-label='{esc(label)}' "
                f"data-value='{esc(repr(float(value)))}' x='{x}' y='{y:.1f}' width='{bar_width}' "
                f"height='{bar_height:.1f}'><title>{esc(label)}: {shown}</title></rect>"
                f"<text x='{middle:.1f}' y='{text_y:.1f}' text-anchor='middle'>{shown}</text>"
            )
        parts.append(f"<text x='{middle:.1f}' y='{plot_bottom + 28}' text-anchor='middle'>{esc(label)}</text>")
    if axis_title:
        parts.append(
            f"<text x='{(left + width) / 2:.1f}' y='{plot_bottom + 44}' text-anchor='middle'>{esc(axis_title)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def overlap_matrix_svg(languages: Sequence[str], counts: Sequence[Sequence[int]], *, title: str) -> str:
    """A languages x languages grid of ``rect.cell``: the count in both lists, shaded by its share of the
    shorter list."""
    size, offset = 38, 34
    width = height = offset + size * len(languages) + 4
    parts = [
        f"<svg class='chart overlap' xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
        f"viewBox='0 0 {width} {height}' role='img' aria-label='{esc(title)}'><title>{esc(title)}</title>"
    ]
    for index, lang in enumerate(languages):
        center = offset + size * index + size / 2
        parts.append(f"<text x='{center:.1f}' y='{offset - 8}' text-anchor='middle'>{esc(lang)}</text>")
        parts.append(f"<text x='{offset - 6}' y='{center + 4:.1f}' text-anchor='end'>{esc(lang)}</text>")
    for row, first in enumerate(languages):
        for column, second in enumerate(languages):
            count = counts[row][column]
            shorter = min(counts[row][row], counts[column][column]) or 1
            share = count / shorter
            x, y = offset + size * column, offset + size * row
            ink = "#fff" if share > 0.55 else "#222"
            parts.append(
                f"<rect class='cell' x='{x}' y='{y}' width='{size}' height='{size}' "
                f"fill='rgba(45,106,176,{0.08 + 0.92 * share:.3f})'><title>{esc(first)} and {esc(second)}: "
                f"{count} neurons in both</title></rect>"
                f"<text x='{x + size / 2}' y='{y + size / 2 + 4}' text-anchor='middle' style='fill:{ink}'>"
                f"{count}</text>"
            )
    parts.append("</svg>")
    return "".join(parts)


def token_style(activation: float, scale: float) -> str:
    """Background of a token: orange for positive, blue for negative, opaque at ``scale``."""
    strength = 0.0 if scale <= 0 or is_missing(activation) else min(abs(activation) / scale, 1.0)
    red, green, blue = (230, 120, 20) if activation >= 0 else (40, 110, 210)
    return f"background:rgba({red},{green},{blue},{strength:.3f})"


def sentence_html(tokens: pl.DataFrame, scale: float) -> str:
    """One sentence's tokens (rows in position order), each a span shaded by its activation."""
    spans = []
    for token in tokens.iter_rows(named=True):
        classes = ["tok"]
        text = token["text"]
        if token["special"]:
            classes.append("special")
            text = text or token["token"]
        elif not text:
            classes.append("empty")  # a later byte of a character an earlier token shows
        if token["last"]:
            classes.append("last")
        tip = f"{token['token']}: {number(token['activation'])}" + (" (last token)" if token["last"] else "")
        spans.append(
            f"<span class='{' '.join(classes)}' style='{token_style(token['activation'], scale)}' "
            f"title='{esc(tip)}'>{esc(text)}</span>"
        )
    return "".join(spans)


def top_sentences(tokens: pl.DataFrame, text_language: str) -> list[pl.DataFrame]:
    """A neuron's top sentences in one text language, best first, one frame of tokens each.

    English comes from every language's pairs: the same sentence found through two languages is
    shown once, and the best ``k`` are kept (``k``: the most any language job kept).
    """
    rows = tokens.filter(pl.col("text_language") == text_language)
    if rows.is_empty():
        return []
    k = int(rows["sentence_rank"].max())  # type: ignore[arg-type]  # polars types it as any Python value
    peak = pl.col("peak_activation")
    key = pl.when(pl.col("ranked_by") == "max_abs").then(peak.abs()).otherwise(peak).alias("key")
    sentences = (
        rows.group_by("language", "id", maintain_order=True)
        .agg(pl.col("text").str.join(""), pl.first("peak_activation", "ranked_by", "sentence_rank"))
        .with_columns(key)
        .sort("key", "sentence_rank", "language", "id", descending=[True, False, False, False])
        .unique(subset=["text"], keep="first", maintain_order=True)
        .head(k)
    )
    return [
        rows.filter((pl.col("language") == language) & (pl.col("id") == pair_id)).sort("position")
        for language, pair_id in sentences.select("language", "id").rows()
    ]


def sentences_section(tokens: pl.DataFrame, text_languages: Sequence[str]) -> str:
    if tokens.is_empty():
        return "<p class='note'>No token activations were computed for this neuron.</p>"
    shown = {lang: top_sentences(tokens, lang) for lang in text_languages}
    # One colour scale per page, over text tokens (special tokens such as BOS can dwarf them).
    text_tokens = tokens.filter(~pl.col("special"))["activation"]
    # polars types a Series aggregate as any Python value (here a number): hence the ignore.
    scale = float(text_tokens.abs().max()) if text_tokens.len() else 1.0  # type: ignore[arg-type]
    ranking = (
        "the largest activation in magnitude, either sign"
        if tokens["ranked_by"][0] == "max_abs"
        else "the largest activation (most positive)"
    )
    parts = [
        f"<p class='note'>Sentences are ranked by their peak: {esc(ranking)} over their text tokens "
        "(evaluation.browser.rank_by).</p>"
    ]
    for lang, sentences in shown.items():
        parts.append(
            f"<h3 id='sentences-{esc(lang)}'>{esc(lang)}</h3><div class='sentences' data-language='{esc(lang)}'>"
        )
        if not sentences:
            parts.append("<p class='note'>No sentences.</p>")
        for sentence in sentences:
            first = sentence.row(0, named=True)
            meta = (
                f"peak activation {number(first['peak_activation'], 3)} · at the last token "
                f"{number(first['last_activation'], 3)} · pair {first['id']} ({first['language']} test set)"
            )
            parts.append(
                f"<p class='sentence'>{sentence_html(sentence, scale)}<span class='meta'>{esc(meta)}</span></p>"
            )
        parts.append("</div>")
    return "".join(parts)


def scores_section(scores: pl.DataFrame, top: pl.DataFrame, eta: pl.DataFrame) -> str:
    listed = top.select("detector", "language").with_columns(pl.lit(True).alias("listed"))
    rows = (
        scores.join(listed, on=["detector", "language"], how="left")
        .join(eta.select("language", "eta_squared"), on="language", how="left")
        .sort("detector", "language")
    )
    columns = [("detector", False), ("language", False), ("score", True), ("rank", True), ("in top-N", False),
               ("η²", True)]  # fmt: skip
    body = []
    for row in rows.iter_rows(named=True):
        listed_here = bool(row["listed"])
        body.append(
            f"<tr{' class=top' if listed_here else ''}>{cell(row['detector'], row['detector'])}"
            f"{cell(row['language'], row['language'])}{cell(row['score'], numeric=True)}"
            f"{cell(row['rank'], numeric=True)}{cell(None, 'yes' if listed_here else 'no')}"
            f"{cell(row['eta_squared'], numeric=True)}</tr>"
        )
    return f"<table class='sortable scores'>{header_row(columns)}<tbody>{''.join(body)}</tbody></table>"


def lape_section(profile: pl.DataFrame, members: Sequence[str], text_languages: Sequence[str]) -> str:
    if profile.is_empty():
        return "<p class='note'>No LAPE profile for this neuron.</p>"
    entropy = profile["lape_entropy"][0]
    membership = ", ".join(members) if members else "none"
    rows = []
    by_language = {row["text_language"]: row for row in profile.iter_rows(named=True)}
    for lang in text_languages:
        row = by_language.get(lang)
        probability = None if row is None else row["lape_probability"]
        rows.append(
            f"<tr>{cell(lang, lang)}{cell(probability, numeric=True)}"
            f"{cell(None, 'yes' if lang in members else '')}</tr>"
        )
    columns = [("language", False), ("activation probability", True), ("LAPE neuron", False)]
    return (
        f"<p>LAPE entropy <strong>{esc(number(entropy, 3))}</strong> (natural log; low: the neuron fires for few "
        f"languages). Language-specific (LAPE) neuron of: <strong>{esc(membership)}</strong>.</p>"
        f"<p class='note'>Activation probability: the share of the language's training tokens on which the "
        f"neuron's activation function is above zero.</p>"
        f"<table class='sortable lape'>{header_row(columns)}<tbody>{''.join(rows)}</tbody></table>"
    )


def lens_section(lens: pl.DataFrame) -> str:
    """The promoted and suppressed tokens, with the scripts of their letters where the lens table has them
    (``evaluation.neuron_tokens.token_scripts``) and a line counting the promoted tokens by script."""
    if lens.is_empty():
        return "<p class='note'>No logit lens for this neuron.</p>"
    with_scripts = "script" in lens.columns
    tables = []
    for direction in ("promoted", "suppressed"):
        rows = lens.filter(pl.col("direction") == direction).sort("rank")
        body = "".join(
            f"<tr>{cell(row['rank'], numeric=True)}<td class='token' title='{esc(row['token'])}'>"
            f"{esc(repr(row['text']))}</td>"
            + (f"<td>{esc(row['script'] or 'no letters')}</td>" if with_scripts else "")
            + f"{cell(row['logit'], numeric=True)}</tr>"
            for row in rows.iter_rows(named=True)
        )
        columns = [("rank", True), ("token", False), *([("script", False)] if with_scripts else []), ("logit", True)]
        tables.append(
            f"<figure><figcaption>{esc(direction)}</figcaption><table class='sortable lens-{esc(direction)}'>"
            f"{header_row(columns)}<tbody>{body}</tbody></table></figure>"
        )
    return script_counts_line(lens) + f"<div class='lens'>{''.join(tables)}</div>"


def script_counts_line(lens: pl.DataFrame) -> str:
    """One line: how many of the promoted tokens are written in each script ('' without a script column)."""
    if "script" not in lens.columns:
        return ""
    promoted = lens.filter(pl.col("direction") == "promoted")
    counts = promoted.group_by("script").len().sort(["len", "script"], descending=[True, False])
    listed = ", ".join(f"{script or 'no letters'} {count}" for script, count in counts.iter_rows())
    return (
        f"<p class='scripts'>Promoted tokens by the script of their letters ({promoted.height} tokens): "
        f"<strong>{esc(listed)}</strong>.</p>"
    )


# --- pages ----------------------------------------------------------------------------------------


def asset(name: str) -> str:
    return resources.files("transfer_neurons.reporting").joinpath(ASSETS, name).read_text(encoding="utf-8")


@dataclass(frozen=True)
class Assets:
    """The two page templates, and the CSS and JS every page inlines."""

    index: Template
    neuron: Template
    style: str
    script: str

    @classmethod
    def load(cls) -> Assets:
        style, script = asset("browser.css"), asset("browser.js")
        # Inlined as they are: a closing tag inside would end the element early.
        for name, text, tag in (("browser.css", style, "</style"), ("browser.js", script, "</script")):
            if tag in text.lower():
                raise ValueError(f"{ASSETS}/{name} must not contain {tag!r}")
        return cls(Template(asset("index.html")), Template(asset("neuron.html")), style, script)


def footer_html(data: BrowserData, settings: BrowserSettings) -> str:
    return (
        f"Model {esc(data.model)}; top-N label {esc(settings.main_label)}; languages "
        f"{esc(', '.join([settings.pivot, *data.languages]))}. Made by <code>transfer_neurons.reporting.neuron_browser"
        f"</code> from the workflow's results; every script and style is inside the page."
    )


def neuron_page(
    data: BrowserData, parts: Mapping[str, pl.DataFrame], layer: int, neuron: int,
    neighbours: tuple[tuple[int, int] | None, ...], assets: Assets, settings: BrowserSettings,
) -> str:  # fmt: skip
    """One neuron's page; ``parts`` holds this neuron's rows of each table of ``data``."""
    text_languages = [settings.pivot, *data.languages]
    listed = parts["top"]
    neuron_type = listed["neuron_type"][0]
    where = ", ".join(
        f"{lang} ({detector}, rank {rank})"
        for detector, lang, rank in listed.select("detector", "language", "rank").rows()
    )
    members = sorted(parts["lape"]["language"].to_list())
    summary = (
        f"{type_label(neuron_type)} neuron, in the top-N list of {listed['language'].n_unique()} of "
        f"{len(data.languages)} languages: {where}. LAPE neuron of: {', '.join(members) or 'no language'}."
    )
    profile = parts["profiles"]
    by_language = dict(zip(profile["text_language"].to_list(), profile["mean_activation"].to_list(), strict=True))
    activation = [by_language.get(lang) for lang in text_languages]
    title = f"{data.model}: layer {layer}, neuron {neuron} ({type_label(neuron_type)})"
    nav = ["<a href='../index.html'>← all neurons</a>"]
    for label, target in zip(("previous in layer", "next in layer"), neighbours, strict=True):
        if target is None:
            nav.append(f"<span class='off'>no {label}</span>")
        else:
            nav.append(f"<a rel='{'prev' if 'previous' in label else 'next'}' href='{esc(page_name(*target))}'>"
                       f"{esc(label)}: {esc(neuron_label(*target))}</a>")  # fmt: skip
    return assets.neuron.substitute(
        title=esc(title),
        style=assets.style,
        script=assets.script,
        nav=" ".join(nav),
        summary=esc(summary),
        scores=scores_section(parts["scores"], listed, parts["specificity"]),
        activation_chart=bar_chart_svg(text_languages, activation, title="mean last-token activation by language"),
        lape=lape_section(profile, members, text_languages),
        sentences=sentences_section(parts["tokens"], text_languages),
        lens=lens_section(parts["lens"]),
        footer=footer_html(data, settings),
    )


def filters_html(index: pl.DataFrame, languages: Sequence[str]) -> str:
    def choices(name: str, label: str, values: Iterable[object]) -> str:
        options = "".join(f"<option value='{esc(value)}'>{esc(value)}</option>" for value in values)
        return f"<label>{esc(label)} <select name='{esc(name)}'><option value=''>all</option>{options}</select></label>"

    return (
        "<label>Search <input type='search' name='q' placeholder='text in any column'></label>"
        + choices("type", "type", sorted(index["neuron_type"].unique().to_list()))
        + choices("language", "language", [lang for lang in languages if lang in set(index["language"].to_list())])
        + choices("detector", "detector", sorted(index["detector"].unique().to_list()))
        + choices("layer", "layer", sorted(index["layer"].unique().to_list()))
    )


INDEX_COLUMNS = [("neuron", False), ("layer", True), ("index", True), ("type", False), ("language", False),
                 ("detector", False), ("score", True), ("rank", True), ("η²", True), ("LAPE", False),
                 ("languages listed", True)]  # fmt: skip


def index_table(index: pl.DataFrame, with_page: set[tuple[int, int]]) -> str:
    body = []
    for row in index.iter_rows(named=True):
        layer, neuron = row["layer"], row["neuron"]
        label = esc(neuron_label(layer, neuron))
        link = (
            f"<td><a href='{PAGES_DIR}/{esc(page_name(layer, neuron))}'>{label}</a></td>"
            if (layer, neuron) in with_page
            else f"<td class='nopage' title='no page (evaluation.browser.max_pages)'>{label}</td>"
        )
        attributes = (
            f"data-type='{esc(row['neuron_type'])}' data-language='{esc(row['language'])}' "
            f"data-detector='{esc(row['detector'])}' data-layer='{esc(layer)}'"
        )
        body.append(
            f"<tr {attributes}>{link}{cell(layer, numeric=True)}{cell(neuron, numeric=True)}"
            f"{cell(None, type_label(row['neuron_type']))}{cell(None, row['language'])}{cell(None, row['detector'])}"
            f"{cell(row['score'], numeric=True)}{cell(row['rank'], numeric=True)}"
            f"{cell(row['eta_squared'], numeric=True)}{cell(None, row['lape'])}{cell(row['n_languages'], numeric=True)}"
            "</tr>"
        )
    return (
        f"<table id='neuron-table' class='sortable neurons'>{header_row(INDEX_COLUMNS)}"
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def overlap_section(top: pl.DataFrame, languages: Sequence[str]) -> str:
    spreads = language_spread(top, len(languages))
    figures = []
    for (detector, neuron_type), counts in overlap_counts(top, languages).items():
        heading = f"{detector}, {type_label(neuron_type)}"
        matrix = overlap_matrix_svg(languages, counts, title=f"{heading}: neurons in both lists")
        spread = bar_chart_svg(
            [str(k) for k in range(1, len(languages) + 1)], spreads[(detector, neuron_type)],
            title=f"{heading}: neurons listed in 1, 2, ... languages", axis_title="languages listing it",
            value_digits=6,
        )  # fmt: skip
        figures.append(
            f"<div class='pair'><figure><figcaption>{esc(heading)}: shared neurons</figcaption>{matrix}</figure>"
            f"<figure><figcaption>neurons by number of languages</figcaption>{spread}</figure></div>"
        )
    return f"<div class='charts'>{''.join(figures)}</div>"


def index_page(
    data: BrowserData, index: pl.DataFrame, pages: pl.DataFrame, assets: Assets, settings: BrowserSettings
) -> str:
    n_neurons = index.select("layer", "neuron").n_unique()
    cap = "every one" if settings.max_pages is None else f"at most {settings.max_pages}"
    summary = (
        f"{index.height} list entries: {n_neurons} distinct neurons in the top-N lists (N = {settings.main_label}) of "
        f"{len(data.languages)} languages ({', '.join(data.languages)}), {index['detector'].n_unique()} detector(s) "
        f"and both types. {pages.height} have a page ({cap}, evaluation.browser.max_pages)."
    )
    return assets.index.substitute(
        title=esc(f"{data.model}: transfer neurons"),
        style=assets.style,
        script=assets.script,
        summary=esc(summary),
        overlap=overlap_section(data.top, data.languages),
        filters=filters_html(index, data.languages),
        table=index_table(index, set(pages.select("layer", "neuron").rows())),
        footer=footer_html(data, settings),
    )


def neuron_parts(data: BrowserData, pages: pl.DataFrame) -> dict[tuple[int, int], dict[str, pl.DataFrame]]:
    """(layer, neuron) -> that neuron's rows of each table, for the neurons with a page."""
    keys = pages.select("layer", "neuron")
    tables = {"top": data.top, "scores": data.scores, "lape": data.lape, "specificity": data.specificity,
              "profiles": data.profiles, "tokens": data.tokens, "lens": data.lens}  # fmt: skip
    parts: dict[tuple[int, int], dict[str, pl.DataFrame]] = {key: {} for key in keys.rows()}
    for name, table in tables.items():
        table = table.with_columns(pl.col("layer").cast(pl.Int32), pl.col("neuron").cast(pl.Int32))
        grouped = table.join(keys.cast(pl.Int32), on=["layer", "neuron"], how="semi").partition_by(
            "layer", "neuron", as_dict=True
        )
        for key in parts:
            parts[key][name] = grouped.get(key, table.clear())
    return parts


def write_site(data: BrowserData, directory: Path, settings: BrowserSettings) -> dict[str, int]:
    """Write ``index.html`` and one page per browsed neuron under ``directory``; return counts and bytes."""
    assets = Assets.load()
    index = index_rows(data)
    pages = page_neurons(index, settings.max_pages)
    directory = Path(directory)
    (directory / PAGES_DIR).mkdir(parents=True, exist_ok=True)
    neighbours = layer_neighbours(pages)
    written = 0
    for (layer, neuron), parts in neuron_parts(data, pages).items():
        page = neuron_page(data, parts, layer, neuron, neighbours[(layer, neuron)], assets, settings)
        path = directory / PAGES_DIR / page_name(layer, neuron)
        path.write_text(page, encoding="utf-8")
        written += path.stat().st_size
    index_path = directory / INDEX_FILE
    index_path.write_text(index_page(data, index, pages, assets, settings), encoding="utf-8")
    return {"rows": index.height, "pages": pages.height, "bytes": written + index_path.stat().st_size}


def build_neuron_browser(
    directory: Path, *, model: str, languages: Sequence[str], settings: BrowserSettings, top_lists: Sequence[Path],
    scores: Sequence[Path], tokens: Sequence[Path], lens: Path, profiles: Path, lape: Path | None = None,
    specificity: Path | None = None,
) -> dict[str, int]:  # fmt: skip
    """The ``neuron_browser`` rule: read one model's tables and write its site under ``directory``."""
    data = load_browser_data(
        model=model, languages=languages, main_label=settings.main_label, top_lists=top_lists, scores=scores,
        tokens=tokens, lens=lens, profiles=profiles, lape=lape, specificity=specificity,
    )  # fmt: skip
    written = write_site(data, directory, settings)
    log.info("%s: %d index rows, %d neuron pages, %d bytes", directory, written["rows"], written["pages"],
             written["bytes"])  # fmt: skip
    return written

"""What Snakemake's own report shows of each figure (category, caption, claims), and what no output carries
of the run that made it (the harness's date and paths, the report's provenance)."""

from __future__ import annotations

import io

import pytest
from docutils.core import publish_parts

from transfer_neurons.evaluation.harness import split_run_facts
from transfer_neurons.reporting.registry import CLAIMS, FIGURES, TABLES
from transfer_neurons.reporting.report import provenance_html
from transfer_neurons.reporting.snakemake_report import (
    ANALYSIS_CATEGORIES,
    category,
    figure_analysis,
    figure_caption,
    figure_category,
    figure_claims,
    rst_text,
    table_category,
)


def rendered(rst: str) -> tuple[str, str]:
    """(HTML body, docutils' warnings) of a reStructuredText caption, as Snakemake renders it."""
    warnings = io.StringIO()
    body = publish_parts(rst, writer="html", settings_overrides={"warning_stream": warnings})["body"]
    return body, warnings.getvalue()


@pytest.mark.parametrize("name", FIGURES.names())
def test_every_figure_has_a_known_category_and_a_caption_that_renders(name):
    assert figure_analysis(name) in ANALYSIS_CATEGORIES, f"{name}: give its analysis a category label"
    assert figure_category(name)
    body, warnings = rendered(figure_caption(name))
    assert not warnings, f"{name}: {warnings}"
    assert ("bears on" in body) == bool(figure_claims(name))


@pytest.mark.parametrize("name", TABLES.names())
def test_every_table_has_a_category(name):
    assert table_category(name) in set(ANALYSIS_CATEGORIES.values())


def test_a_figure_bears_on_the_claims_its_analysis_registers():
    assert [claim.name for claim in figure_claims("layer_distribution")] == ["placement"]
    assert [claim.name for claim in figure_claims("logit_lens")] == ["latent_english", "latent_english_type1"]
    assert figure_claims("language_pca") == []
    statement = CLAIMS["placement"].statement
    assert rst_text(statement) in figure_caption("layer_distribution")


def test_an_analysis_without_a_label_is_named_by_its_module():
    assert category("qa") == "QA"
    assert category("new_analysis") == "new analysis"


def test_rst_text_keeps_markup_characters_literal():
    text = "x_1 *bold* `code` |sub| <b> [1] back\\slash ends_ "
    body, warnings = rendered(rst_text(text))
    assert not warnings
    assert "x_1 *bold* `code` |sub| &lt;b&gt; [1] back\\slash ends_" in body


def test_the_harness_results_keep_no_date_machine_or_path():
    results = {
        "results": {"task": {"acc,none": 0.5}},
        "config": {"model": "/tmp/run/model", "limit": 8},
        "date": 1796369593.8,
        "pretty_env_info": "CPU: AMD EPYC",
        "git_hash": None,
    }
    stable, facts = split_run_facts(results)
    assert stable == {"results": {"task": {"acc,none": 0.5}}, "config": {"limit": 8}}
    assert facts == {"date": 1796369593.8, "pretty_env_info": "CPU: AMD EPYC", "git_hash": None,
                     "config": {"model": "/tmp/run/model"}}  # fmt: skip


def test_the_report_page_links_the_run_facts_instead_of_stating_them():
    facts = {
        "date": "2026-12-04T07:00:00+00:00",
        "commit": "abc123 +changes",
        "models": {"tiny": {"source": "path", "location": "/tmp/run/tiny-model", "weights_sha256": "f00"}},
        "data": {"corpus.tsv": "d1"},
        "config_sha256": "c0",
        "precision": {"device": "cpu"},
        "packages": {"torch": "2.13.0"},
        "machine": {"cpu": "AMD EPYC"},
    }
    page = provenance_html(facts, "provenance.json")
    assert "href='provenance.json'" in page and "f00" in page and "c0" in page
    for run_fact in ("2026-12-04", "abc123", "/tmp/run/tiny-model", "AMD EPYC", "2.13.0"):
        assert run_fact not in page

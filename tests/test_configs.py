"""Every shipped config and every test config passes the workflow's schema, and the schema refuses typos."""

from __future__ import annotations

import copy
import re

import pytest
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from tests.workflow_helpers import CONFIGS, REPO

SCHEMA = str(REPO / "config" / "schema.yaml")
DEFAULT = REPO / "config" / "config.yaml"
# Configs a run replaces the default with, and configs laid over it (as --configfile does).
FULL_CONFIGS = [DEFAULT, REPO / "config" / "paper.yaml", *sorted(CONFIGS.glob("*.yaml"))]
OVERLAYS = [REPO / "config" / name for name in ("languages-12.yaml", "cpu-full.yaml", "finetune.yaml")]
# The benchmarks' overlays: on the default config, or on cpu-full.yaml where the name says so.
BENCHMARK_OVERLAYS = sorted((REPO / "benchmarks" / "configs").glob("*.yaml"))


def merged(base: dict, overlay: dict) -> dict:
    """``overlay`` laid over ``base`` key by key, as Snakemake merges a --configfile."""
    result = copy.deepcopy(base)
    for key, value in overlay.items():
        result[key] = (
            merged(result[key], value) if isinstance(value, dict) and isinstance(result.get(key), dict) else value
        )
    return result


def test_every_config_file_is_listed():
    listed = {path.name for path in [*FULL_CONFIGS, *OVERLAYS]}
    assert {path.name for path in (REPO / "config").glob("*.yaml")} - {"schema.yaml"} <= listed


@pytest.mark.parametrize("path", FULL_CONFIGS, ids=lambda path: path.name)
def test_config_passes_the_schema(path):
    validate(yaml.safe_load(path.read_text()), SCHEMA)


@pytest.mark.parametrize("path", OVERLAYS, ids=lambda path: path.name)
def test_overlay_on_the_default_config_passes_the_schema(path):
    validate(merged(yaml.safe_load(DEFAULT.read_text()), yaml.safe_load(path.read_text())), SCHEMA)


@pytest.mark.parametrize("path", BENCHMARK_OVERLAYS, ids=lambda path: path.name)
def test_benchmark_overlay_passes_the_schema(path):
    config = yaml.safe_load(DEFAULT.read_text())
    if path.name.startswith("cpu-full"):
        config = merged(config, yaml.safe_load((REPO / "config" / "cpu-full.yaml").read_text()))
    validate(merged(config, yaml.safe_load(path.read_text())), SCHEMA)


def test_a_misspelled_key_is_refused():
    config = yaml.safe_load((CONFIGS / "tiny.yaml").read_text())
    broken = copy.deepcopy(config)
    broken["evaluation"]["states"]["knn_ks"] = broken["evaluation"]["states"].pop("knn_k")
    with pytest.raises(WorkflowError, match="knn_ks"):
        validate(broken, SCHEMA)


def test_the_twelve_language_config_merges_into_a_valid_config(tmp_path):
    # Snakemake lays a --configfile over the default config; a dry run is the check that matters.
    from tests.workflow_helpers import snakemake

    (tmp_path / "config").symlink_to(REPO / "config")
    (tmp_path / "data").symlink_to(REPO / "data")
    (tmp_path / "config.yaml").symlink_to(REPO / "config" / "languages-12.yaml")
    result = snakemake(tmp_path, "--dry-run", "all")
    text = result.stdout + result.stderr
    for lang in ("zh", "de", "es", "ru", "ar", "hi", "th", "vi"):
        assert f"results/corpus/{lang}.parquet" in text


def test_documented_commands_put_no_target_after_configfile():
    # --configfile takes every name after it, so `--configfile x.yaml all` reads "all" as a config file.
    documents = [REPO / "README.md", REPO / "profiles" / "README.md", *sorted((REPO / "config").glob("*.yaml"))]
    swallowed = [
        f"{document.name}: {line.strip()}"
        for document in documents
        for line in document.read_text().splitlines()
        # the command ends at a backtick (inline code) or a table cell's bar
        if re.search(r"snakemake\b[^`|]*--configfile\s+[^\s\[`|]+\s+[^\s\-#(`|]", line)
    ]
    assert not swallowed, swallowed


def test_options_added_later_default_to_their_earlier_behaviour():
    # A config written before evaluation.lm_eval.jobs and evaluation.loss.text existed still validates.
    config = yaml.safe_load(DEFAULT.read_text())
    del config["evaluation"]["lm_eval"]["jobs"], config["evaluation"]["loss"]["text"]
    validate(config, SCHEMA)
    assert config["evaluation"]["lm_eval"]["jobs"] == "per_condition"
    assert config["evaluation"]["loss"]["text"] == "every"


def test_precision_last_layer_and_language_space_options_have_defaults():
    # A config written before runtime.dtype, runtime.last_layer and the language-space options existed
    # validates; the defaults are today's precision, the paper's last layer and the test-split analyses.
    config = yaml.safe_load(DEFAULT.read_text())
    for key in ("dtype", "last_layer"):
        del config["runtime"][key]
    config["evaluation"]["language_space"] = {"pca_depths": [0.5]}
    del config["evaluation"]["specificity"]["english_pairs"]
    validate(config, SCHEMA)
    assert (config["runtime"]["dtype"], config["runtime"]["last_layer"]) == ("auto", "normed")
    space = config["evaluation"]["language_space"]
    assert (space["sentences"], space["embedding"], space["pca_layers"]) == ("test", False, "depths")
    assert space["pca_conditions"] == ["normal"] and space["svd_thresholds"] == [0.9, 0.95, 0.99]
    assert config["evaluation"]["specificity"]["english_pairs"] is None


def test_an_unknown_precision_is_refused():
    config = yaml.safe_load(DEFAULT.read_text())
    config["runtime"]["dtype"] = "float64"
    with pytest.raises(WorkflowError, match="float64"):
        validate(config, SCHEMA)


def test_readme_lists_every_registered_claim_with_its_smallest_effect():
    """The README's thresholds table is written by hand; it must follow the registered settings."""
    from transfer_neurons.reporting import analyses, registry

    assert analyses.MODULES and registry.CLAIMS
    rows = {
        cells[1].strip(): cells[4].strip()
        for line in (REPO / "README.md").read_text().splitlines()
        if line.startswith("| ") and len(cells := line.split("|")) == 8
    }
    for name, claim in registry.CLAIMS.items():
        assert name in rows, f"README's claims table lacks {name}"
        assert rows[name].split()[0] == f"{claim.settings.smallest_effect:.2f}", name

"""Every shipped config and every test config passes the workflow's schema, and the schema refuses typos."""

from __future__ import annotations

import copy

import pytest
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from tests.workflow_helpers import CONFIGS, REPO

SCHEMA = str(REPO / "config" / "schema.yaml")
CONFIG_FILES = sorted((REPO / "config").glob("*.yaml")) + sorted(CONFIGS.glob("*.yaml"))


@pytest.mark.parametrize("path", [p for p in CONFIG_FILES if p.name != "schema.yaml"], ids=lambda path: path.name)
def test_config_passes_the_schema(path):
    validate(yaml.safe_load(path.read_text()), SCHEMA)


def test_a_misspelled_key_is_refused():
    config = yaml.safe_load((CONFIGS / "tiny.yaml").read_text())
    broken = copy.deepcopy(config)
    broken["evaluation"]["states"]["knn_ks"] = broken["evaluation"]["states"].pop("knn_k")
    with pytest.raises(WorkflowError, match="knn_ks"):
        validate(broken, SCHEMA)

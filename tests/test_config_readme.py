"""config/README.md describes every config file and schema key; it is what tools/write_config_readme.py writes."""

from __future__ import annotations

import re

import yaml

from tests.workflow_helpers import REPO
from tools.write_config_readme import README, SCHEMA, readme_text

CONFIG_DIR = REPO / "config"


def property_entries(node, inside_definitions: bool = False) -> list[str]:
    """Every key of every ``properties`` mapping in the schema, outside ``definitions`` (one per key row)."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "definitions":
                continue
            if key == "properties" and isinstance(value, dict):
                found.extend(value)
            found.extend(property_entries(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(property_entries(value))
    return found


def key_rows(text: str) -> dict[str, list[str]]:
    """Key path -> the cells of its row, from the README's key table."""
    rows = {}
    for line in text.splitlines():
        cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip().strip("|"))]  # not at \|
        if len(cells) == 5 and re.fullmatch(r"`[^`]+`", cells[0]) and not cells[0].startswith("`config/"):
            rows[cells[0].strip("`")] = cells
    return rows


def test_readme_is_what_the_tool_writes():
    assert README.read_text(encoding="utf-8") == readme_text(), (
        "config/README.md is stale: run tools/write_config_readme.py"
    )


def test_every_schema_key_has_a_row_with_a_description():
    rows = key_rows(README.read_text(encoding="utf-8"))
    entries = property_entries(yaml.safe_load(SCHEMA.read_text()))
    assert len(rows) == len(entries), f"{len(entries)} schema keys, {len(rows)} rows"
    assert sorted(path.rsplit(".", 1)[-1] for path in rows) == sorted(entries)
    undescribed = [path for path, cells in rows.items() if not cells[4]]
    assert not undescribed, f"keys without a description in config/schema.yaml or config/config.yaml: {undescribed}"


def test_every_config_file_has_a_row():
    text = README.read_text(encoding="utf-8")
    for path in sorted(CONFIG_DIR.glob("*.yaml")):
        assert re.search(rf"^\| `config/{re.escape(path.name)}` \| \S", text, flags=re.MULTILINE), path.name

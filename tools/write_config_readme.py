"""Write config/README.md: every config file, and every key of config/schema.yaml with its type, its
value in config/config.yaml and its description.

    python tools/write_config_readme.py           # rewrite config/README.md
    python tools/write_config_readme.py --check   # exit 1 when config/README.md differs from what it would write

A key's description is the schema's ``description``; where the schema has none, the comment on that key
in config/config.yaml (the lines just above it, or the one after its value). tests/test_config_readme.py
fails when a schema key has no row or the file is stale.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO / "config"
SCHEMA = CONFIG_DIR / "schema.yaml"
DEFAULT_CONFIG = CONFIG_DIR / "config.yaml"
README = CONFIG_DIR / "README.md"
ANY_NAME = "<name>"  # a key of a mapping whose keys the user chooses (a model's or a language's name)
NO_VALUE = object()


@dataclass(frozen=True)
class Key:
    path: str  # dotted, with <name> for user-chosen keys and [] for list items
    node: dict
    required: bool


def resolve(node: dict, schema: dict) -> dict:
    """``node`` with a ``$ref`` to ``#/definitions/...`` replaced by the definition (its own keys win)."""
    if "$ref" not in node:
        return node
    target = schema
    for part in node["$ref"].removeprefix("#/").split("/"):
        target = target[part]
    return {**resolve(target, schema), **{key: value for key, value in node.items() if key != "$ref"}}


def schema_keys(node: dict, schema: dict, prefix: str = "") -> Iterator[Key]:
    """Every key under ``node``, depth first in the schema's order."""
    node = resolve(node, schema)
    required = set(node.get("required", []))
    for name, child in node.get("properties", {}).items():
        path = f"{prefix}.{name}" if prefix else name
        yield Key(path, resolve(child, schema), name in required)
        yield from schema_keys(child, schema, path)
    extra = node.get("additionalProperties")
    if isinstance(extra, dict) and "properties" in resolve(extra, schema):
        yield from schema_keys(extra, schema, f"{prefix}.{ANY_NAME}")
    items = node.get("items")
    if isinstance(items, dict) and "properties" in resolve(items, schema):
        yield from schema_keys(items, schema, f"{prefix}[]")
    for alternative in node.get("oneOf", []) + node.get("anyOf", []):
        # An alternative that is an object of its own (e.g. {authors: path} instead of a name).
        yield from schema_keys(alternative, schema, prefix)


def type_text(node: dict) -> str:
    """A short summary of what a key accepts."""
    if "enum" in node:
        return "one of " + ", ".join(json.dumps(value) for value in node["enum"])
    if "const" in node:
        return json.dumps(node["const"])
    alternatives = node.get("oneOf") or node.get("anyOf")
    if alternatives and not any("required" in alternative for alternative in alternatives):
        return " or ".join(type_text(alternative) for alternative in alternatives)
    kinds = node.get("type", "")
    text = " or ".join(kinds) if isinstance(kinds, list) else kinds
    if "items" in node and isinstance(node["items"], dict) and "properties" not in node["items"]:
        text += f" of {type_text(node['items'])}"
    if node.get("oneOf") and any("required" in alternative for alternative in node["oneOf"]):
        choices = [" + ".join(alternative["required"]) for alternative in node["oneOf"] if "required" in alternative]
        text += " with exactly one of " + ", ".join(choices)
    return text or "any"


def config_comments(path: Path = DEFAULT_CONFIG) -> dict[str, str]:
    """Dotted key path (list positions left out) -> the comment on that key in a config file."""
    comments, stack, pending = {}, [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not stripped:
            pending = []
            continue
        if stripped.startswith("#"):
            pending.append(stripped.lstrip("#").strip())
            continue
        match = re.match(r"^( *)([A-Za-z0-9_-]+):(.*)$", line)
        if not match:
            pending = []
            continue
        indent, name, rest = len(match.group(1)), match.group(2), match.group(3)
        stack = [(level, key) for level, key in stack if level < indent] + [(indent, name)]
        inline = rest.split(" # ", 1)[1].strip() if " # " in rest else ""
        text = " ".join([*pending, inline]).strip()
        if text:
            comments[".".join(key for _, key in stack)] = text
        pending = []
    return comments


def config_value(config: dict, path: str):
    """The value at ``path`` in ``config`` (NO_VALUE where it has none or the path has a placeholder)."""
    if ANY_NAME in path or "[]" in path:
        return NO_VALUE
    value = config
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return NO_VALUE
        value = value[part]
    return value


def cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def value_text(value) -> str:
    if value is NO_VALUE or isinstance(value, dict):
        return ""
    text = json.dumps(value, ensure_ascii=False)
    return f"`{text}`" if len(text) <= 60 else f"`{text[:57]}...`"


def file_description(path: Path) -> str:
    """A config file's opening comment lines (the schema: its ``description``)."""
    if path == SCHEMA:
        return yaml.safe_load(path.read_text())["description"] + " (JSON Schema; the workflow validates every config)"
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    return " ".join(lines)


def readme_text() -> str:
    schema = yaml.safe_load(SCHEMA.read_text())
    config = yaml.safe_load(DEFAULT_CONFIG.read_text())
    comments = config_comments()
    files = sorted(CONFIG_DIR.glob("*.yaml"), key=lambda path: (path != DEFAULT_CONFIG, path != SCHEMA, path.name))
    lines = [
        "# Configuration",
        "",
        "<!-- Written by tools/write_config_readme.py from config/schema.yaml and config/config.yaml: edit those,",
        "     then run the tool (tests/test_config_readme.py fails when this file is stale). -->",
        "",
        "The workflow reads `config/config.yaml` (Snakefile: `configfile:`); another file replaces it with",
        "`--configfile FILE --replace-workflow-config` (without the second flag Snakemake merges the files key",
        "by key). Every config is validated against `config/schema.yaml` before any job runs: a misspelled or",
        "unknown key is an error.",
        "",
        "## Files",
        "",
        "| file | what it is |",
        "| --- | --- |",
        *(f"| `config/{path.name}` | {cell(file_description(path))} |" for path in files),
        "",
        "## Keys",
        "",
        f"`{ANY_NAME}` stands for a key you choose (a model's name, a language code); `[]` for each item of a",
        "list. *Required*: the schema requires the key where its parent is present. *Default config*: the value",
        "in `config/config.yaml`.",
        "",
        "| key | accepts | required | default config | description |",
        "| --- | --- | --- | --- | --- |",
    ]
    for key in schema_keys(schema, schema):
        description = key.node.get("description") or comments.get(key.path, "")
        lines.append(
            f"| `{key.path}` | {cell(type_text(key.node))} | {'yes' if key.required else ''} | "
            f"{cell(value_text(config_value(config, key.path)))} | {cell(description)} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    text = readme_text()
    if argv == ["--check"]:
        if not README.is_file() or README.read_text(encoding="utf-8") != text:
            print("config/README.md is stale: run python tools/write_config_readme.py")
            return 1
        return 0
    if argv:
        print(__doc__)
        return 2
    README.write_text(text, encoding="utf-8")
    print(f"wrote {README.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

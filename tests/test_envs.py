"""Every rule names a conda env in envs/, and each env pins what its rule's script imports.

--use-conda cannot be exercised offline (no conda channels), so this checks the env files
statically: the third-party imports a rule's script reaches (its own and those of the
transfer_neurons modules it imports, transitively) must be pinned in the rule's env, and
every pin must equal requirements.txt and the installed version, which the tests run with.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.workflow_helpers import REPO, snakemake, tiny_config, write_config

PACKAGE = "transfer_neurons"
PACKAGE_DIR = REPO / "src" / PACKAGE
WORKFLOW_FILES = [REPO / "Snakefile", *sorted((REPO / "rules").glob("*.smk"))]
# Directives that make a rule run something (and so need an environment).
ACTIONS = ("script", "shell", "run", "notebook", "wrapper")
# Snakemake's script preamble puts Snakemake itself on the path, so envs need not pin it.
PROVIDED_BY_SNAKEMAKE = {"snakemake"}

RULE_HEADER = re.compile(r"^( *)(?:local)?rule (\w+):$")


@dataclass(frozen=True)
class Rule:
    name: str
    source: Path
    directives: dict[str, str]  # directive -> its first value, quotes stripped

    def path(self, directive: str) -> Path:
        """A path directive resolved like Snakemake does: relative to the defining file."""
        return (self.source.parent / self.directives[directive]).resolve()


def parse_rules(source: Path) -> list[Rule]:
    """Rules of one Snakefile or .smk file (snakefmt layout: directives indented 4 spaces under the
    rule, which may itself be indented under an ``if``)."""
    lines = source.read_text().splitlines()
    rules = []
    for index, line in enumerate(lines):
        header = RULE_HEADER.match(line)
        if not header:
            continue
        indent = len(header.group(1))
        body = []
        for following in lines[index + 1 :]:
            if following.strip() and len(following) - len(following.lstrip(" ")) <= indent:
                break  # the next line at the rule's own level ends it
            body.append(following)
        directive = re.compile(rf"^ {{{indent + 4}}}(\w+):\s*(.*)$")
        directives = {}
        for position, text in enumerate(body):
            match = directive.match(text)
            if match:
                # A value on the directive's own line, or else its first line below.
                value = match.group(2) or next((later for later in body[position + 1 :] if later.strip()), "")
                directives[match.group(1)] = value.strip().strip("\"'")
        rules.append(Rule(header.group(2), source, directives))
    return rules


def workflow_rules() -> list[Rule]:
    return [rule for source in WORKFLOW_FILES for rule in parse_rules(source)]


def acting_rules() -> list[Rule]:
    return [rule for rule in workflow_rules() if any(action in rule.directives for action in ACTIONS)]


def imported_modules(path: Path) -> set[str]:
    """Absolute module names imported anywhere in a file (function-level imports included)."""
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import inside the package
                parent = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts[: -node.level]
                base = ".".join([*parent, base] if base else parent)
            modules.add(base)
            # `from transfer_neurons import corpus` imports a submodule, not just a name.
            modules.update(f"{base}.{alias.name}" for alias in node.names if base.startswith(PACKAGE))
    return modules


def package_module_file(module: str) -> Path | None:
    """The file of a transfer_neurons module or package, None for names that are not modules."""
    path = PACKAGE_DIR.joinpath(*module.split(".")[1:])
    for candidate in (path / "__init__.py", path.parent / f"{path.name}.py"):
        if candidate.is_file():
            return candidate
    return None


def third_party_imports(script: Path) -> set[str]:
    """Top-level third-party names the script imports, following transfer_neurons imports."""
    found, pending, seen = set(), [script], set()
    while pending:
        path = pending.pop()
        if path in seen:
            continue
        seen.add(path)
        for module in imported_modules(path):
            top = module.split(".")[0]
            if top == PACKAGE:
                parts = module.split(".")
                # Importing a.b.c also runs a/__init__.py and a/b/__init__.py.
                for depth in range(1, len(parts) + 1):
                    if file := package_module_file(".".join(parts[:depth])):
                        pending.append(file)
            elif top and top not in sys.stdlib_module_names:
                found.add(top)
    return found - PROVIDED_BY_SNAKEMAKE


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@functools.cache
def installed_distributions() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()  # slow: it reads every installed package


def distribution_of(import_name: str) -> str:
    distributions = installed_distributions().get(import_name)
    assert distributions, f"no installed distribution provides the module {import_name!r}"
    return normalized(distributions[0])


def env_pins(env_file: Path) -> tuple[str, dict[str, str]]:
    """The env's Python version and its package pins (conda and pip sections, names normalized)."""
    python, pins = None, {}
    for entry in yaml.safe_load(env_file.read_text())["dependencies"]:
        for spec in entry["pip"] if isinstance(entry, dict) else [entry]:
            match = re.fullmatch(r"([A-Za-z0-9_.\-]+)\s*(?:==?\s*(\S+))?", spec)
            assert match, f"{env_file.name}: {spec!r} is neither a bare name nor an exact pin"
            name, version = match.group(1), match.group(2) or ""
            if normalized(name) == "python":
                python = version
            elif normalized(name) != "pip":
                pins[normalized(name)] = version
    return python, pins


def requirement_pins() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[normalized(name)] = version.strip()
    return pins


RULES = acting_rules()


def test_the_parsed_rules_are_all_the_workflow_has(tmp_path):
    # Guards the text parsing above: a rule it misses would escape every check below. The harness
    # rule depends on evaluation.lm_eval.jobs, so the workflow is listed under each setting.
    config = tiny_config(tmp_path)
    listed = set()
    for jobs in ("per_condition", "per_language"):
        config["evaluation"]["lm_eval"]["jobs"] = jobs
        write_config(tmp_path, config)
        output = snakemake(tmp_path, "--list-rules").stdout
        listed |= {line.split()[0] for line in output.splitlines() if line.strip()}
    assert listed == {rule.name for rule in workflow_rules()}


@pytest.mark.parametrize("rule", RULES, ids=lambda rule: rule.name)
def test_rule_names_an_env_file_in_envs(rule):
    assert "conda" in rule.directives, f"rule {rule.name} has no conda: directive"
    env_file = rule.path("conda")
    assert env_file.parent == REPO / "envs", f"rule {rule.name}: {env_file} is not in envs/"
    assert env_file.is_file(), f"rule {rule.name}: {env_file} does not exist"


@pytest.mark.parametrize("rule", RULES, ids=lambda rule: rule.name)
def test_env_pins_every_package_the_rule_imports(rule):
    _, pins = env_pins(rule.path("conda"))
    needed = {distribution_of(name) for name in third_party_imports(rule.path("script"))}
    assert needed, f"rule {rule.name}: found no imports; is the import scan broken?"
    assert not needed - set(pins), f"rule {rule.name}: {rule.path('conda').name} lacks {sorted(needed - set(pins))}"


def test_prepare_model_env_has_the_configured_gguf_package():
    # models.py imports `gguf_package` by name from the config, which no import scan can see.
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    packages = {spec["gguf_package"] for spec in config["models"].values() if "gguf_package" in spec}
    (prepare_model,) = [rule for rule in RULES if rule.name == "prepare_model"]
    _, pins = env_pins(prepare_model.path("conda"))
    assert {distribution_of(package) for package in packages} <= set(pins)


@pytest.mark.parametrize("env_file", sorted((REPO / "envs").glob("*.yaml")), ids=lambda path: path.name)
def test_env_pins_match_requirements_and_installed_versions(env_file):
    assert "conda-forge" in yaml.safe_load(env_file.read_text())["channels"]
    python, pins = env_pins(env_file)
    assert python == f"{sys.version_info.major}.{sys.version_info.minor}", f"{env_file.name}: python={python}"
    requirements = requirement_pins()
    for name, version in pins.items():
        assert version, f"{env_file.name}: {name} is not pinned to a version"
        assert requirements.get(name) == version, (
            f"{env_file.name}: {name}=={version}, requirements.txt: {requirements.get(name)}"
        )
        # A local label only names the build of the same release (torch 2.13.0+cpu is 2.13.0).
        installed = importlib.metadata.version(name).split("+")[0]
        assert installed == version, f"{env_file.name}: {name}=={version}, installed: {installed}"

"""Every rule names a conda env in envs/, the smallest that runs it, and each env pins what its rule imports.

--use-conda cannot be exercised offline (no conda channels), so this checks the env files
statically: the third-party imports a rule's script reaches (its own and those of the
transfer_neurons modules it imports, transitively: plain imports, ``lazy_import("name")`` and the
analysis modules ``reporting.analyses`` imports by name; imports guarded by ``except ImportError``
are optional) must be pinned in the rule's env, and every pin must equal requirements.txt (from
which tools/write_envs.py writes the envs) and the installed version, which the tests run with.
Then each env's rules' modules are imported with every other pinned package blocked, as in an env
that lacks them. The package itself reaches each job through PYTHONPATH (rules/common.smk).
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.workflow_helpers import REPO, snakemake, tiny_config, write_config
from tools.write_envs import ENVS, expected_files, requirement_sections

PACKAGE = "transfer_neurons"
PACKAGE_DIR = REPO / "src" / PACKAGE
WORKFLOW_FILES = [REPO / "Snakefile", *sorted((REPO / "rules").glob("*.smk"))]
# Directives that make a rule run something (and so need an environment).
ACTIONS = ("script", "shell", "run", "notebook", "wrapper")
# Snakemake's script preamble puts Snakemake itself on the path, so envs need not pin it.
PROVIDED_BY_SNAKEMAKE = {"snakemake"}
# What a package needs at run time without importing it where a scan could see: Altair saves PNGs
# through vl-convert.
RUNTIME_NEEDS = {"altair": {"vl-convert-python"}}
# The rules that draw figures, write tables and reports: their envs must not install torch.
REPORTING_RULES = {"figure_detection", "figure_evaluation", "summary_tables", "report_html", "neuron_browser"}

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


def optional_import_nodes(tree: ast.AST) -> set[ast.AST]:
    """Import statements inside a ``try`` whose handler catches ImportError: the code runs without them."""
    optional = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try):
            caught = {ast.unparse(handler.type) for handler in node.handlers if handler.type is not None}
            if caught & {"ImportError", "ModuleNotFoundError", "(ImportError, ModuleNotFoundError)"}:
                optional.update(inner for statement in node.body for inner in ast.walk(statement))
    return optional


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts).removesuffix(".__init__")


def imported_modules(path: Path) -> set[str]:
    """Absolute module names imported anywhere in a file (function-level imports included), except
    optional ones: import statements, ``lazy_import("name")`` calls, and the modules of a package that
    imports its ``MODULES`` by name (``importlib.import_module(f"{__name__}.{name}")``)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    optional = optional_import_nodes(tree)
    modules = set()
    for node in ast.walk(tree):
        if node in optional:
            continue
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
        elif isinstance(node, ast.Call) and ast.unparse(node.func) == "lazy_import" and node.args:
            if isinstance(node.args[0], ast.Constant):
                modules.add(node.args[0].value)
        elif isinstance(node, ast.Call) and ast.unparse(node.func) == "importlib.import_module":
            if node.args and ast.unparse(node.args[0]).startswith("f'{__name__}."):
                modules.update(f"{module_name(path)}.{name}" for name in registered_module_names(tree))
    return modules


def registered_module_names(tree: ast.AST) -> list[str]:
    """The names in a module's top-level ``MODULES = (...)``."""
    for node in getattr(tree, "body", []):
        if isinstance(node, ast.Assign) and any(getattr(target, "id", "") == "MODULES" for target in node.targets):
            return [element.value for element in node.value.elts]
    raise AssertionError("a module imports its MODULES by name but defines no MODULES tuple")


def package_module_file(module: str) -> Path | None:
    """The file of a transfer_neurons module or package, None for names that are not modules."""
    path = PACKAGE_DIR.joinpath(*module.split(".")[1:])
    for candidate in (path / "__init__.py", path.parent / f"{path.name}.py"):
        if candidate.is_file():
            return candidate
    return None


def package_modules(script: Path) -> set[str]:
    """The transfer_neurons modules the script imports, directly or through others."""
    found, pending, seen = set(), [script], set()
    while pending:
        path = pending.pop()
        if path in seen:
            continue
        seen.add(path)
        for module in imported_modules(path):
            if module.split(".")[0] == PACKAGE:
                parts = module.split(".")
                # Importing a.b.c also runs a/__init__.py and a/b/__init__.py.
                for depth in range(1, len(parts) + 1):
                    if file := package_module_file(".".join(parts[:depth])):
                        found.add(".".join(parts[:depth]))
                        pending.append(file)
    return found


def third_party_imports(script: Path) -> set[str]:
    """Top-level third-party names the script imports, following transfer_neurons imports."""
    files = [script, *(package_module_file(module) for module in package_modules(script))]
    found = set()
    for path in files:
        for module in imported_modules(path):
            top = module.split(".")[0]
            if top and top != PACKAGE and top not in sys.stdlib_module_names:
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


def needed_distributions(rule: Rule) -> set[str]:
    """The distributions a rule's script needs: those it imports and what they need at run time."""
    needed = {distribution_of(name) for name in third_party_imports(rule.path("script"))}
    return needed | {extra for name in needed for extra in RUNTIME_NEEDS.get(name, ())}


@pytest.mark.parametrize("rule", RULES, ids=lambda rule: rule.name)
def test_env_pins_every_package_the_rule_imports(rule):
    _, pins = env_pins(rule.path("conda"))
    needed = needed_distributions(rule)
    assert needed, f"rule {rule.name}: found no imports; is the import scan broken?"
    assert not needed - set(pins), f"rule {rule.name}: {rule.path('conda').name} lacks {sorted(needed - set(pins))}"


def env_files() -> list[Path]:
    return sorted((REPO / "envs").glob("*.yaml"))


@pytest.mark.parametrize("rule", RULES, ids=lambda rule: rule.name)
def test_rule_names_the_smallest_env_that_runs_it(rule):
    # Smallest by inclusion: no other env that runs the rule holds only part of the rule's env.
    needed = needed_distributions(rule)
    chosen = set(env_pins(rule.path("conda"))[1])
    smaller = [
        path.name for path in env_files() if needed <= set(env_pins(path)[1]) and set(env_pins(path)[1]) < chosen
    ]
    assert not smaller, f"rule {rule.name}: {smaller} run it with less than {rule.path('conda').name}"


def test_the_scan_sees_the_figure_rules_imports():
    # Guards the scan: figures reach altair only through lazy_import and the analyses through MODULES.
    (figure,) = [rule for rule in RULES if rule.name == "figure_evaluation"]
    assert {"altair", "polars", "scipy", "numpy"} <= third_party_imports(figure.path("script"))
    assert "transfer_neurons.reporting.analyses.qa" in package_modules(figure.path("script"))


def test_the_scan_skips_imports_guarded_by_import_error(tmp_path):
    module = tmp_path / "module.py"
    module.write_text("try:\n    import torch\nexcept ImportError:\n    pass\nimport numpy\n")
    assert imported_modules(module) == {"numpy"}


@pytest.mark.parametrize("rule", sorted(REPORTING_RULES))
def test_reporting_rules_envs_have_no_torch(rule):
    (found,) = [candidate for candidate in RULES if candidate.name == rule]
    _, pins = env_pins(found.path("conda"))
    assert not {"torch", "transformers", "lm-eval", "peft"} & set(pins), f"rule {rule}: {found.path('conda').name}"


def blocked_import_names(env_file: Path) -> set[str]:
    """Import names of the runtime packages requirements.txt pins that ``env_file`` lacks."""
    _, pins = env_pins(env_file)
    runtime, _ = requirement_sections()
    missing = {normalized(spec.split("==")[0]) for spec in runtime} - set(pins)
    return {name for name, dists in installed_distributions().items() if normalized(dists[0]) in missing}


# Run in a fresh interpreter: the path finder no longer finds the blocked top-level names, as if they
# were not installed (`import torch` fails, importlib.util.find_spec("torch") is None).
HIDING_FINDER = """
import importlib, importlib.machinery, sys
BLOCKED = set({blocked!r})

class Hiding(importlib.machinery.PathFinder):
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            return None
        return super().find_spec(name, path, target)

sys.meta_path = [Hiding if finder is importlib.machinery.PathFinder else finder for finder in sys.meta_path]
for module in {modules!r}:
    importlib.import_module(module)
"""


@pytest.mark.parametrize("env_file", env_files(), ids=lambda path: path.name)
def test_env_imports_its_rules_modules_without_the_other_packages(env_file):
    # An env without torch must still import every module its rules reach.
    modules = sorted(
        {module for rule in RULES if rule.path("conda") == env_file for module in package_modules(rule.path("script"))}
    )
    assert modules, f"no rule uses {env_file.name}"
    blocked = sorted(blocked_import_names(env_file))
    program = HIDING_FINDER.format(blocked=blocked, modules=modules)
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, f"{env_file.name} (without {', '.join(blocked)}):\n{result.stderr[-3000:]}"


def test_the_hiding_finder_hides_a_package():
    program = HIDING_FINDER.format(blocked=["torch"], modules=["transfer_neurons.model.hooks"])
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, cwd=REPO)
    assert result.returncode != 0 and "No module named 'torch'" in result.stderr


def test_env_files_are_written_from_requirements():
    for path, text in expected_files().items():
        assert path.read_text() == text, f"{path.name} differs from tools/write_envs.py's: run it"
    assert {path.name for path in env_files()} == {f"{env.name}.yaml" for env in ENVS}


def test_envs_install_no_local_path():
    # Snakemake copies an env file to .snakemake/conda/<hash>.yaml and conda runs pip in that folder,
    # so a path relative to envs/ would point elsewhere: the package comes through PYTHONPATH instead.
    for path in env_files():
        for entry in yaml.safe_load(path.read_text())["dependencies"]:
            for spec in entry["pip"] if isinstance(entry, dict) else [entry]:
                assert not re.match(r"(-e|--editable|\.|/|file:)", spec), f"{path.name}: {spec}"


def test_jobs_find_the_package_through_pythonpath_not_sys_path():
    common = (REPO / "rules" / "common.smk").read_text()
    assert 'PACKAGE_SOURCE = str(Path(workflow.basedir) / "src")' in common
    assert "os.environ.update(\n    PYTHONPATH=" in common
    for script in sorted((REPO / "scripts").glob("*.py")):
        assert "sys.path" not in script.read_text(), f"{script.name} changes sys.path"


def test_pyproject_declares_the_runtime_requirements_and_the_license():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    runtime, _ = requirement_sections()
    assert sorted(project["dependencies"]) == sorted(runtime)
    assert project["license"] == "MIT" and project["license-files"] == ["LICENSE"]
    assert (REPO / "LICENSE").read_text().startswith("MIT License")


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

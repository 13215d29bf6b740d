"""Run the real Snakefile on a tiny model and a tiny corpus in a temporary directory."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.tiny import save_tiny_model

REPO = Path(__file__).resolve().parents[1]
BUILTIN = REPO / "data" / "corpus" / "builtin"
QA_SET = REPO / "data" / "qa" / "builtin_mkqa.jsonl"
HARNESS_TASKS = REPO / "data" / "lm_eval"
CONFIGS = REPO / "tests" / "configs"
TINY_LANGUAGES = ("ja", "it")


def write_tiny_corpus(directory: Path, language: str, n_pairs: int = 40) -> Path:
    lines = (BUILTIN / f"en-{language}.tsv").read_text(encoding="utf-8").splitlines()
    path = directory / f"en-{language}.tsv"
    path.write_text("\n".join(lines[: n_pairs + 1]) + "\n", encoding="utf-8")
    return path


def prepare_workdir(workdir: Path, family: str = "llama") -> None:
    """Write what the test configs point at: the tiny model, tiny corpora and the QA set."""
    save_tiny_model(family, workdir / "tiny-model")
    for lang in TINY_LANGUAGES:
        write_tiny_corpus(workdir, lang)
    shutil.copy(QA_SET, workdir / QA_SET.name)
    shutil.copytree(HARNESS_TASKS, workdir / "data" / "lm_eval", dirs_exist_ok=True)


def load_test_config(name: str) -> dict:
    """A config of ``tests/configs`` (each is validated by the workflow's schema in test_configs)."""
    return yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())


def tiny_config(workdir: Path, family: str = "llama", name: str = "tiny") -> dict:
    """``tests/configs/{name}.yaml``, with the files it points at written to ``workdir``."""
    prepare_workdir(workdir, family)
    return load_test_config(name)


def write_config(workdir: Path, config: dict) -> Path:
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def snakemake_command(workdir: Path, *arguments: str) -> list[str]:
    """The command line that runs the repository's Snakefile on ``workdir``."""
    return [
        sys.executable, "-m", "snakemake",
        "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(workdir),
        "--configfile", str(workdir / "config.yaml"),
        "--cores", "2",
        *arguments,
    ]  # fmt: skip


def snakemake_environment() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def snakemake(workdir: Path, *arguments: str, check: bool = True) -> subprocess.CompletedProcess:
    command = snakemake_command(workdir, *arguments)
    result = subprocess.run(command, capture_output=True, text=True, env=snakemake_environment(), cwd=workdir)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(arguments)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def planned_outputs(workdir: Path, *targets: str) -> list[str]:
    """Outputs a dry run would (re)create."""
    result = snakemake(workdir, "--dry-run", *targets)
    text = result.stdout + result.stderr
    return re.findall(r"^\s+output: (.+)$", text, flags=re.MULTILINE)


def planned_rules(workdir: Path, *targets: str) -> set[str]:
    result = snakemake(workdir, "--dry-run", *targets)
    text = result.stdout + result.stderr
    return set(re.findall(r"^(?:local)?rule (\w+):$", text, flags=re.MULTILINE)) - {"all"}

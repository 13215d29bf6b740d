"""Run the real Snakefile on a tiny model and a tiny corpus in a temporary directory."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from tests.tiny import save_tiny_model

REPO = Path(__file__).resolve().parents[1]
BUILTIN = REPO / "data" / "corpus" / "builtin"
TINY_LANGUAGES = ("ja", "it")


def write_tiny_corpus(directory: Path, language: str, n_pairs: int = 40) -> Path:
    lines = (BUILTIN / f"en-{language}.tsv").read_text(encoding="utf-8").splitlines()
    path = directory / f"en-{language}.tsv"
    path.write_text("\n".join(lines[: n_pairs + 1]) + "\n", encoding="utf-8")
    return path


def tiny_config(workdir: Path, family: str = "llama") -> dict:
    model_dir = save_tiny_model(family, workdir / "tiny-model")
    sources = {lang: {"path": str(write_tiny_corpus(workdir, lang))} for lang in TINY_LANGUAGES}
    return {
        "models": {"tiny": {"path": str(model_dir)}},
        "pivot_language": "en",
        "languages": list(TINY_LANGUAGES),
        "corpus": {"test_percent": 30, "max_train": None, "max_test": None, "sources": sources},
        "runtime": {"device": "cpu", "batch_size": 8, "max_tokens": 32, "threads": 2},
        "detection": {
            "detectors": ["centroid", "correlation"],
            "type1_fraction": 0.5,
            "top_n": 5,
            "top_n_sweep": [5, "paper_fraction"],
        },
        "evaluation": {
            "detector": "centroid",
            "factor": 0.0,
            "random_seeds": [0, 1],
            "sweep_seeds": [0],
            "layer_matched": True,
            "states": {"positions": "prompt", "knn_k": [3]},
            "qa": {
                "source": {"path": str(REPO / "data" / "qa" / "builtin_mkqa.jsonl")},
                "positions": "prompt_last",
                "template": "Q: {question}\nA:",
                "max_new_tokens": 3,
                "batch_size": 8,
                "limit": 10,
                "kinds": ["normal", "transfer", "random"],
                "include_sweep": True,
            },
            "attention": {"sentences": 4, "positions": "prompt"},
            "language_space": {"pca_depths": [0.5, 1.0]},
            "bootstrap_resamples": 200,
        },
        "resources": {"model_mem_mb": 1000, "model_runtime_min": 10, "gpus": 0},
    }


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

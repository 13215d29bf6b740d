"""What a report's numbers came from: model weights, data files, config, packages, code and machine."""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.metadata
import json
import os
import platform
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

PACKAGES = ("torch", "transformers", "lm-eval", "snakemake", "polars", "numpy", "altair", "vl-convert-python")


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 24), b""):
            digest.update(block)
    return digest.hexdigest()


def config_digest(config: Mapping) -> str:
    """SHA-256 of the run's config as canonical JSON: two runs with equal digests had equal settings."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def source_commit(directory: Path) -> str:
    """The git commit of the workflow's code, with ``+changes`` when the working tree differs from it."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True, text=True,
                                check=True).stdout.strip()  # fmt: skip
        changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=directory,
                                 capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return commit + (" +changes" if changed else "")


def machine() -> dict[str, str]:
    cpu = platform.processor() or "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                    if line.startswith("model name")), cpu)  # fmt: skip
    facts = {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    try:
        import torch

        if torch.cuda.is_available():
            facts["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return facts


def precision(config: Mapping) -> dict[str, str]:
    """How the models ran and were read: ``runtime.device``, ``runtime.dtype`` (with what ``auto`` means)
    and ``runtime.last_layer``. Each dump's ``meta.json`` records the precision its job resolved."""
    runtime = config.get("runtime", {})
    dtype = runtime.get("dtype", "auto")
    return {
        "device": str(runtime.get("device", "auto")),
        "dtype": "auto (bfloat16 on CUDA, float32 on the CPU)" if dtype == "auto" else str(dtype),
        "last_layer": str(runtime.get("last_layer", "normed")),
    }


def provenance(
    manifests: Mapping[str, Path], data_files: Sequence[Path], config: Mapping, workflow_dir: Path
) -> dict[str, object]:
    """Everything the report's footer states, as plain values."""
    models = {}
    for name, path in manifests.items():
        manifest = json.loads(Path(path).read_text())
        models[name] = {"source": manifest.get("source", ""), "location": manifest.get("location", ""),
                        "weights_sha256": manifest.get("weights_sha256", "not recorded")}  # fmt: skip
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "models": models,
        "data": {str(path): file_digest(Path(path)) for path in data_files},
        "config_sha256": config_digest(config),
        "precision": precision(config),
        "packages": package_versions(),
        "commit": source_commit(workflow_dir),
        "machine": machine(),
    }

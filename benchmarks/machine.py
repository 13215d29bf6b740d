"""What the numbers were measured on: CPU, memory, library versions, device and date."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import platform
import subprocess
import time
from pathlib import Path

import numpy as np
import torch
import transformers


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The ``model name`` line of /proc/cpuinfo (or what platform knows elsewhere)."""
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def total_memory_gib(meminfo: Path = Path("/proc/meminfo")) -> float | None:
    if not meminfo.is_file():
        return None
    for line in meminfo.read_text().splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 2**20, 1)  # the value is in KiB
    return None


def gpu_name(device: torch.device) -> str | None:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else None


def machine_info(device: torch.device) -> dict:
    """One flat dict for the report header and the JSON."""
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "ram_gib": total_memory_gib(),
        "device": str(device),
        "gpu": gpu_name(device),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "numpy": np.__version__,
    }


MATMUL_PROBE_SIZE = 1024


def matmul_gflops(repeats: int = 5) -> float:
    """The matmul rate right now: GFLOP/s of a float32 [1024 x 1024] x [1024 x 1024] torch product, best of ``repeats``.

    This is the limit the limit-based figures are measured against: what this machine's BLAS
    does on one well-shaped product with every thread torch uses.
    """
    size = MATMUL_PROBE_SIZE
    left, right = torch.randn(size, size), torch.randn(size, size)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        left @ right
        seconds.append(time.perf_counter() - start)
    return 2 * size**3 / min(seconds) / 1e9


def speed_probe(repeats: int = 5) -> dict:
    """Matmul GFLOP/s and memory-copy GB/s right now, best of ``repeats``.

    Shared virtual machines vary over a run; a probe at the start and the end shows how much.
    """
    source = np.ones(2**25, dtype=np.float64)  # 256 MiB, far beyond any cache
    target = np.empty_like(source)
    copy_s = []
    for _ in range(repeats):
        start = time.perf_counter()
        np.copyto(target, source)
        copy_s.append(time.perf_counter() - start)
    return {
        "matmul_gflops": matmul_gflops(repeats),
        # A copy reads and writes every byte.
        "memory_copy_gbps": 2 * source.nbytes / min(copy_s) / 1e9,
        # Runnable processes, ours included: above the core count, others compete for the CPU.
        "load_average_1min": os.getloadavg()[0],
    }


def source_state(repo: Path) -> dict:
    """The commit and a digest of the package's source, to tie numbers to code (and catch edits mid-run)."""
    digest = hashlib.sha256()
    for path in sorted((repo / "src").rglob("*.py")):
        digest.update(path.relative_to(repo).as_posix().encode())
        digest.update(path.read_bytes())
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    return {"commit": commit, "src_digest": digest.hexdigest()[:12]}

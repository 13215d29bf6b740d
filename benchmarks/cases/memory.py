"""Case 4: peak resident memory of the activation dump as the number of sentences grows.

Each size runs in its own process (``benchmarks.dump_memory``), as each rule does, so
peaks do not carry over. The dump streams batch by batch into pre-allocated files, so the
peak must stay flat: within 10 % from the smallest to the largest size.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from benchmarks.inputs import Bench
from benchmarks.settings import REPO

FLATNESS_TARGET = 1.10


def measure_in_subprocess(bench: Bench, n_sentences: int) -> dict:
    settings = bench.settings
    command = [
        sys.executable,
        "-m",
        "benchmarks.dump_memory",
        "--manifest",
        str(bench.manifest),
        "--sentences",
        str(n_sentences),
        "--batch-size",
        str(settings.batch_size),
        "--max-batch-tokens",
        str(settings.max_batch_tokens),
        "--device",
        bench.device_name,
    ]
    # The child imports ``benchmarks`` from the repository root, wherever the runner was started.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    finished = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    if finished.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{finished.stderr[-4000:]}")
    return json.loads(finished.stdout.strip().splitlines()[-1])


def flatness(rows: list[dict], key: str) -> float:
    values = [row[key] for row in rows]
    return max(values) / min(values)


def run(bench: Bench) -> dict:
    settings = bench.settings
    rows = [
        measure_in_subprocess(bench, n_sentences)
        for n_sentences in settings.memory_sizes
        for _ in range(settings.repeats_memory)
    ]
    ratio = flatness(rows, "peak_rss_mib")
    return {
        "batch_size": settings.batch_size,
        "max_batch_tokens": settings.max_batch_tokens,
        "runs": rows,
        "peak_ratio": ratio,
        "peak_anon_ratio": flatness(rows, "peak_anon_mib"),
        "target": FLATNESS_TARGET,
        "met": ratio <= FLATNESS_TARGET,
    }

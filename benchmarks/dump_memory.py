"""Peak memory of one activation dump, in a fresh process (what one ``dump_activations`` rule holds).

    python -m benchmarks.dump_memory --manifest M --sentences N [--batch-size B] [--max-tokens T]

Prints one JSON line: peak resident memory (VmHWM) and, sampled every few milliseconds,
the peaks of its anonymous part (heap: model, tensors) and file-backed part (mapped files,
including the dump's memory-mapped arrays, which the kernel can drop once written back).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.inputs import cycled, sentence_pool
from transfer_neurons.data.dumps import dump_activations
from transfer_neurons.model.loading import load_model

STATUS = Path("/proc/self/status")
SAMPLE_SECONDS = 0.005


def status_mib() -> dict[str, float]:
    """VmRSS, VmHWM, RssAnon and RssFile of this process in MiB (Linux); {} elsewhere."""
    if not STATUS.is_file():
        return {}
    values = {}
    for line in STATUS.read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in {"VmRSS", "VmHWM", "RssAnon", "RssFile"}:
            values[key] = int(rest.split()[0]) / 1024  # kB
    return values


class PeakSampler:
    """A background thread that keeps the largest RssAnon and RssFile seen."""

    def __init__(self) -> None:
        self.peaks = {"RssAnon": 0.0, "RssFile": 0.0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            for key, value in status_mib().items():
                if key in self.peaks:
                    self.peaks[key] = max(self.peaks[key], value)
            time.sleep(SAMPLE_SECONDS)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def peak_rss_mib() -> float:
    """The process's peak resident set: VmHWM, or ru_maxrss where /proc is missing."""
    return status_mib().get("VmHWM", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def measure(
    manifest: Path, n_sentences: int, batch_size: int, max_batch_tokens: int, device: str, directory: Path
) -> dict:
    with PeakSampler() as sampler:
        loaded = load_model(manifest, device)
        after_load = status_mib().get("VmRSS")
        sentences = cycled(sentence_pool(), n_sentences)
        dump_activations(loaded, sentences, directory, batch_size=batch_size, max_batch_tokens=max_batch_tokens)
    return {
        "sentences": n_sentences,
        "peak_rss_mib": peak_rss_mib(),
        "rss_after_model_load_mib": after_load,
        "peak_anon_mib": sampler.peaks["RssAnon"],
        "peak_file_mib": sampler.peaks["RssFile"],
        "dump_mib": sum(path.stat().st_size for path in directory.iterdir()) / 2**20,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--sentences", type=int, required=True)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-batch-tokens", type=int, default=4096)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="benchmark-dump-") as directory:
        result = measure(
            args.manifest, args.sentences, args.batch_size, args.max_batch_tokens, args.device, Path(directory)
        )
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()

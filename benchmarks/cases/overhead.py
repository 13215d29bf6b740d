"""Case 2: detection overhead, dumps + centroids + scoring against plain batched forward passes.

Detection is what the workflow's ``dump_activations``, ``centroids`` and ``score_neurons``
rules compute for one language (both sides of the pairs dumped, the centroid detector run
over every layer), called through the same package functions. The baseline is the same
sentences in the same batches through the decoder stack with no hooks and nothing stored.
Target: at most 1.25x.
"""

from __future__ import annotations

import cProfile
import itertools
import pstats
import shutil
import tempfile
from pathlib import Path

from benchmarks.forward import plain_forward
from benchmarks.inputs import Bench, corpus_pairs
from benchmarks.timing import Splits, split_timings, time_interleaved
from transfer_neurons.data.dumps import Dump, dump_activations
from transfer_neurons.detection.centroids import centroids_from_dumps
from transfer_neurons.detection.detectors import detector
from transfer_neurons.detection.stages import score_layers

TARGET = 1.25
PROFILE_ROWS = 10


def detection(bench: Bench, sides: dict[str, list[str]], directory: Path) -> Splits:
    """Dump both sides, compute the centroids, score every neuron; return the time per phase."""
    settings = bench.settings
    splits = Splits()
    with splits.measure("dump"):
        for side, texts in sides.items():
            dump_activations(
                bench.loaded,
                texts,
                directory / side,
                batch_size=settings.batch_size,
                max_batch_tokens=settings.max_batch_tokens,
                description=side,
            )
    with splits.measure("centroids"):
        centroids = centroids_from_dumps(directory / "pivot", directory / "target")
    with splits.measure("scoring"):
        score_layers(bench.adapter, Dump(directory / "target"), centroids, detector("centroid"))
    return splits


def plain(bench: Bench, sides: dict[str, list[str]]) -> None:
    """The baseline: each side in the same batches as its dump."""
    for texts in sides.values():
        plain_forward(
            bench.model,
            bench.tokenizer,
            texts,
            bench.settings.batch_size,
            max_batch_tokens=bench.settings.max_batch_tokens,
        )


def profile_rows(profile: cProfile.Profile, rows: int = PROFILE_ROWS) -> list[dict]:
    """The functions with the most time of their own (excluding callees), largest first."""
    stats = pstats.Stats(profile).stats  # {(file, line, name): (calls, primitive, self, cumulative, callers)}
    ranked = sorted(stats.items(), key=lambda item: item[1][2], reverse=True)[:rows]
    return [
        {"function": function_label(file, line, name), "calls": calls, "self_s": self_s, "cumulative_s": cumulative}
        for (file, line, name), (_, calls, self_s, cumulative, _) in ranked
    ]


def function_label(file: str, line: int, name: str) -> str:
    """``module.py:line(function)``, or the bare name of a built-in (cProfile files those under ``~``)."""
    return name if file == "~" else f"{Path(file).name}:{line}({name})"


def profiled_detection(bench: Bench, sides: dict[str, list[str]], directory: Path) -> list[dict]:
    """One extra detection run under cProfile (off the clock), to show where the time goes."""
    profile = cProfile.Profile()
    profile.enable()
    try:
        detection(bench, sides, directory)
    finally:
        profile.disable()
    return profile_rows(profile)


def run(bench: Bench) -> dict:
    settings = bench.settings
    pivot, target = corpus_pairs(settings.language, settings.scoring_sentences)
    sides = {"pivot": pivot, "target": target}
    scratch = Path(tempfile.mkdtemp(prefix="benchmark-detection-"))
    runs = itertools.count()
    try:
        timings, results = time_interleaved(
            {
                "plain_forward": lambda: plain(bench, sides),
                "detection": lambda: detection(bench, sides, scratch / f"run-{next(runs)}"),
            },
            # Five rounds, not three: the target is a ratio of two times that a shared machine
            # moves by 10-20 % from round to round, and one slow round must not decide it.
            settings.repeats_fast,
        )
        few = {side: texts[: settings.profile_pairs] for side, texts in sides.items()}
        profile = profiled_detection(bench, few, scratch / "profiled")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    overhead = timings["detection"].median / timings["plain_forward"].median
    return {
        "sentences": len(pivot) + len(target),
        "batch_size": settings.batch_size,
        "max_batch_tokens": settings.max_batch_tokens,
        "timings": timings,
        "splits": split_timings(results["detection"]),
        "overhead": overhead,
        "target": TARGET,
        "met": overhead <= TARGET,
        "profile": profile,
        "profile_sentences": sum(len(texts[: settings.profile_pairs]) for texts in sides.values()),
    }

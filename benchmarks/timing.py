"""Repeated wall-clock timing, summarised as median and spread."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Timing:
    """Seconds over repeated runs: median, min-max and interquartile range."""

    median: float
    minimum: float
    maximum: float
    q1: float
    q3: float
    samples: tuple[float, ...]

    @classmethod
    def of(cls, samples: list[float]) -> Timing:
        if not samples:
            raise ValueError("a timing needs at least one sample")
        ordered = sorted(samples)
        # With fewer than two samples there is no spread; the quartiles collapse onto the value.
        q1, _, q3 = statistics.quantiles(ordered, n=4, method="inclusive") if len(ordered) > 1 else ordered * 3
        return cls(statistics.median(ordered), ordered[0], ordered[-1], q1, q3, tuple(samples))

    def scaled(self, factor: float) -> Timing:
        """The same timing with every sample multiplied (for linear extrapolation)."""
        return Timing.of([sample * factor for sample in self.samples])

    def plus(self, other: Timing) -> Timing:
        """Run-by-run sum of two phases timed in the same runs."""
        return Timing.of([first + second for first, second in zip(self.samples, other.samples, strict=True)])

    def as_dict(self) -> dict:
        return asdict(self)

    def describe(self, unit: str = "s") -> str:
        """``median (min–max)`` for the report."""
        return f"{_number(self.median)} {unit} ({_number(self.minimum)}–{_number(self.maximum)})"


def _number(value: float) -> str:
    return f"{value:.3g}" if value < 100 else f"{value:.0f}"


def time_call(function: Callable[[], Any]) -> tuple[float, Any]:
    """Run ``function`` once; return (seconds, its result). Garbage is collected first, off the clock."""
    gc.collect()
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def time_interleaved(
    functions: dict[str, Callable[[], Any]], repeats: int
) -> tuple[dict[str, Timing], dict[str, list[Any]]]:
    """Time each function ``repeats`` times, alternating between them in every round.

    Alternating spreads slow phases of a shared machine over all contenders instead of
    penalising whichever happened to run then. Returns timings and every run's result.
    """
    samples: dict[str, list[float]] = {name: [] for name in functions}
    results: dict[str, list[Any]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            seconds, result = time_call(function)
            samples[name].append(seconds)
            results[name].append(result)
    return {name: Timing.of(values) for name, values in samples.items()}, results


def time_repeated(function: Callable[[], Any], repeats: int) -> tuple[Timing, list[Any]]:
    """Time one function ``repeats`` times."""
    timings, results = time_interleaved({"only": function}, repeats)
    return timings["only"], results["only"]


def ratio(slow: Timing, fast: Timing) -> float:
    """How many times faster ``fast`` is than ``slow``, from medians."""
    return slow.median / fast.median


class Splits:
    """Seconds spent in named phases of one run: ``with splits.measure("forward"): ...``."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def measure(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


def split_timings(runs: list[Splits]) -> dict[str, Timing]:
    """Per-phase timings over repeated runs that recorded the same phases."""
    return {name: Timing.of([run.seconds[name] for run in runs]) for name in runs[0].seconds}

"""Projecting a measured cost to another size, without going negative or exploding.

A cost that grows with the number of sentences S is modelled as ``fixed + per_sentence * S``
with both terms non-negative: nothing gets faster with more sentences, and nothing costs less
than nothing. Timings on a shared machine are noisy, and an unconstrained straight line
through two or three noisy points can have a negative intercept or slope; extrapolated far
enough, its projection goes negative (a busy CPU once gave -1009 s). So:

* the terms are fitted by least squares on relative errors (noise is a factor, not an
  offset), constrained to be non-negative (``scipy.optimize.nnls``);
* the projection is then held to what non-negative terms allow from the largest measured
  size m alone: for S >= m, cost(m) <= cost(S) <= cost(m) * S / m; for S < m,
  cost(m) * S / m <= cost(S) <= cost(m). When S is a measured size the bracket is that one
  measurement, so nothing is fitted.

Guarantee: if every measured median is within a factor ``noise`` of the true cost
(``noise >= 1``) and the true terms are non-negative, the projection is within a factor
``noise * max(S / m, m / S)`` of the true cost at S, and always positive. ``within_factor``
states it; ``tests/test_benchmark_projection.py`` checks it on noisy synthetic timings.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.optimize import nnls


def nonnegative_line(sizes: Sequence[float], seconds: Sequence[float]) -> tuple[float, float]:
    """(fixed, per_size) >= 0 minimising the relative squared error of ``fixed + per_size * size``.

    With one size only, the whole cost is taken as per-size (the larger of the two readings
    beyond the measured size, so the conservative one for our own costs).
    """
    sizes_array, seconds_array = np.asarray(sizes, dtype=float), np.asarray(seconds, dtype=float)
    if len(np.unique(sizes_array)) < 2:
        return 0.0, float(seconds_array.max() / sizes_array.max())
    weights = 1 / seconds_array  # relative errors: each row divided by its own measurement
    design = np.column_stack([np.ones_like(sizes_array), sizes_array]) * weights[:, None]
    (fixed, per_size), _ = nnls(design, seconds_array * weights)
    return float(fixed), float(per_size)


def within_factor(target: float, largest_measured: float, noise: float = 1.0) -> float:
    """The factor within which ``project`` is of the true cost at ``target``, given measurements within ``noise``."""
    return noise * max(target / largest_measured, largest_measured / target)


def project(sizes: Sequence[float], seconds: Sequence[float], target: float) -> dict:
    """The cost at ``target`` from median ``seconds`` measured at ``sizes`` (all positive).

    Returns the projection with everything it rests on: the inputs, the fitted terms, the
    fitted value at ``target`` and the bracket the largest measurement allows.
    """
    if len(sizes) != len(seconds) or not sizes:
        raise ValueError(f"need as many timings as sizes, and at least one: {sizes}, {seconds}")
    if min(sizes) <= 0 or min(seconds) <= 0 or target <= 0:
        raise ValueError(f"sizes, timings and the target must be positive: {sizes}, {seconds}, {target}")
    fixed, per_size = nonnegative_line(sizes, seconds)
    largest = int(np.argmax(sizes))
    size_m, seconds_m = float(sizes[largest]), float(seconds[largest])
    low, high = sorted((seconds_m, seconds_m * target / size_m))
    fitted = fixed + per_size * target
    return {
        "sizes": [float(size) for size in sizes],
        "seconds": [float(value) for value in seconds],
        "target": float(target),
        "fixed_s": fixed,
        "per_size_s": per_size,
        "fitted_s": fitted,
        "bounds_s": [low, high],
        "projected_s": float(np.clip(fitted, low, high)),
        "basis": "measured" if target == size_m else ("extrapolated" if target > size_m else "interpolated"),
        "factor_bound": within_factor(target, size_m),
    }

"""The paper-scale projection stays positive and within its stated factor of the truth on noisy timings.

Timings are synthetic: a true cost ``fixed + per_sentence * S`` (the closed form's, roughly, at
the paper's dimensions) times noise factors like those of a shared machine, including the
ones that made the former straight-line fit project -1009 s.
"""

import itertools

import numpy as np
import pytest

from benchmarks.projection import nonnegative_line, project, within_factor

FIXED, PER_SENTENCE = 0.04, 0.0005  # seconds; both non-negative, as every real cost
TARGET = 2000  # the paper's sentences per closed-form call


def true_cost(sentences: float) -> float:
    return FIXED + PER_SENTENCE * sentences


def noisy(sizes, factors) -> list[float]:
    return [true_cost(size) * factor for size, factor in zip(sizes, factors, strict=True)]


def test_exact_timings_give_the_exact_cost_and_terms():
    sizes = [32, 128, 512]
    fit = project(sizes, noisy(sizes, [1, 1, 1]), TARGET)
    assert fit["fixed_s"] == pytest.approx(FIXED) and fit["per_size_s"] == pytest.approx(PER_SENTENCE)
    assert fit["projected_s"] == pytest.approx(true_cost(TARGET))
    assert fit["basis"] == "extrapolated"


def test_timings_that_made_the_straight_line_negative_give_a_positive_projection():
    sizes = [32, 128]
    seconds = noisy(sizes, [6.0, 1.0])  # the small size caught a busy phase
    slope, intercept = np.polyfit(sizes, seconds, 1)
    assert intercept + slope * TARGET < 0  # what the former fit projected
    fit = project(sizes, seconds, TARGET)
    assert fit["fixed_s"] >= 0 and fit["per_size_s"] >= 0
    low, high = fit["bounds_s"]
    assert 0 < low <= fit["projected_s"] <= high
    # Within the stated factor of the truth, for measurements within a factor 6 of it.
    bound = within_factor(TARGET, max(sizes), noise=6.0)
    assert true_cost(TARGET) / bound <= fit["projected_s"] <= true_cost(TARGET) * bound


@pytest.mark.parametrize("sizes", [[32, 128], [500, 1000, 2000], [250, 1000], [4, 8], [4000, 8000]])
def test_noisy_timings_stay_within_the_stated_factor(sizes):
    rng = np.random.default_rng(len(sizes) * sizes[0])
    noise = 3.0
    # Every corner of the noise box (the worst cases) and random draws inside it.
    corners = itertools.product([1 / noise, noise], repeat=len(sizes))
    draws = noise ** rng.uniform(-1, 1, size=(200, len(sizes)))
    bound = within_factor(TARGET, max(sizes), noise)
    for factors in [*corners, *draws]:
        fit = project(sizes, noisy(sizes, factors), TARGET)
        assert fit["projected_s"] > 0
        assert true_cost(TARGET) / bound <= fit["projected_s"] <= true_cost(TARGET) * bound


def test_a_measured_target_is_the_measurement():
    sizes = [500, 1000, 2000]
    seconds = noisy(sizes, [2.0, 0.5, 1.3])
    fit = project(sizes, seconds, 2000)
    assert fit["basis"] == "measured"
    assert fit["projected_s"] == seconds[-1]
    assert fit["factor_bound"] == 1.0


def test_one_size_is_taken_as_a_per_sentence_cost():
    assert nonnegative_line([128], [0.064]) == (0.0, 0.0005)
    fit = project([128], [0.064], TARGET)
    assert fit["projected_s"] == pytest.approx(0.0005 * TARGET)


def test_nonsense_inputs_are_refused():
    with pytest.raises(ValueError):
        project([32, 128], [0.1], TARGET)
    with pytest.raises(ValueError):
        project([32, 128], [0.1, -0.2], TARGET)

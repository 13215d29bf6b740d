"""Case 1: neuron scoring, the closed form against the straightforward procedure.

Two comparisons on the same sentences and centroids:

* the scoring maths alone, both given the same captured activations (target >= 100x);
* end to end, forward passes plus scoring: the straightforward procedure runs one batch-1
  forward pass per sentence, the project batches them (target >= 5x).

Centroids and write vectors are inputs to both (computed once, off the clock), and both
must produce the same scores to 1e-4. The straightforward side is slow and its cost is
the same for every layer and every sentence, so it is timed on a subset of layers (and,
end to end, of sentences) and its time scaled by the subset's share; the report says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from benchmarks.inputs import Bench, corpus_pairs
from benchmarks.naive import batch1_states, naive_centroid_scores
from benchmarks.states import ScoringInputs, all_write_vectors, batched_states, both_centroids, project_scores
from benchmarks.timing import Splits, ratio, split_timings, time_interleaved

TOLERANCE = 1e-4
MATHS_TARGET = 100.0
END_TO_END_TARGET = 5.0


class ScoresDisagreeError(AssertionError):
    """The straightforward and the closed-form scores differ by more than the tolerance."""


@dataclass(frozen=True)
class Problem:
    """What both implementations score: write vectors [L, n, d] and centroids [T, L, d]."""

    write_vectors: np.ndarray
    centroids: np.ndarray
    naive_layers: list[int]  # the layers the straightforward side is timed on

    @property
    def layer_scale(self) -> float:
        return self.write_vectors.shape[0] / len(self.naive_layers)

    def naive_scores(self, residual: np.ndarray, activations: np.ndarray) -> np.ndarray:
        """Straightforward scores of ``naive_layers``: [L, S, *] inputs -> [T, len(naive_layers), n]."""
        layers = self.naive_layers
        return naive_centroid_scores(
            residual[layers], activations[layers], self.write_vectors[layers], self.centroids[:, layers]
        )

    def project_scores(self, residual: np.ndarray, activations: np.ndarray) -> np.ndarray:
        """The project's scores of every layer -> [T, L, n]."""
        return project_scores(residual, activations, self.write_vectors, self.centroids)


def strided_layers(n_layers: int, stride: int) -> list[int]:
    """Every ``stride``-th layer counted from the last, so that the deepest layer is always in."""
    return sorted(range(n_layers - 1, -1, -stride))


def max_difference(first: np.ndarray, second: np.ndarray, what: str) -> float:
    """Largest absolute score difference; fails above ``TOLERANCE``."""
    difference = float(np.abs(first - second).max())
    if not difference <= TOLERANCE:
        raise ScoresDisagreeError(f"{what}: scores differ by {difference:.3g} > {TOLERANCE}")
    return difference


def compare_maths(inputs: ScoringInputs, problem: Problem, repeats: int) -> dict:
    """Both scorers on the same captured activations."""
    timings, results = time_interleaved(
        {
            "straightforward": lambda: problem.naive_scores(inputs.residual, inputs.activations),
            "project": lambda: problem.project_scores(inputs.residual, inputs.activations),
        },
        repeats,
    )
    timings["straightforward"] = timings["straightforward"].scaled(problem.layer_scale)
    speedup = ratio(timings["straightforward"], timings["project"])
    project_on_naive_layers = results["project"][-1][:, problem.naive_layers]
    return {
        "timings": timings,
        "straightforward_layers_timed": problem.naive_layers,
        "speedup": speedup,
        "target": MATHS_TARGET,
        "met": speedup >= MATHS_TARGET,
        "max_abs_diff": max_difference(results["straightforward"][-1], project_on_naive_layers, "scoring maths"),
    }


def compare_end_to_end(bench: Bench, sentences: list[str], problem: Problem, repeats: int) -> dict:
    """Forward passes plus scoring, with the time split between the two."""
    settings = bench.settings
    stride = settings.batch1_stride
    subset = sentences[::stride]
    sentence_scale = len(sentences) / len(subset)

    def straightforward():
        splits = Splits()
        with splits.measure("forward"):
            residual, activations = batch1_states(bench.loaded, subset, settings.max_tokens)
        with splits.measure("scoring"):
            scores = problem.naive_scores(residual, activations)
        return scores, splits

    def project():
        splits = Splits()
        with splits.measure("forward"):
            inputs = batched_states(bench.loaded, sentences, settings.batch_size, settings.max_tokens)
        with splits.measure("scoring"):
            # Timed only: the agreement check below rescores the straightforward side's subset.
            problem.project_scores(inputs.residual, inputs.activations)
        return inputs, splits

    _, results = time_interleaved({"straightforward": straightforward, "project": project}, repeats)
    splits = {name: split_timings([run_splits for _, run_splits in runs]) for name, runs in results.items()}
    splits["straightforward"] = {
        "forward": splits["straightforward"]["forward"].scaled(sentence_scale),
        "scoring": splits["straightforward"]["scoring"].scaled(sentence_scale * problem.layer_scale),
    }
    totals = {name: phases["forward"].plus(phases["scoring"]) for name, phases in splits.items()}
    # The project's scores of the same sentences from its batched, left-padded forward passes must match.
    batched = results["project"][-1][0]
    batched_subset_scores = problem.project_scores(batched.residual[:, ::stride], batched.activations[:, ::stride])
    batched_subset_scores = batched_subset_scores[:, problem.naive_layers]
    speedup = ratio(totals["straightforward"], totals["project"])
    return {
        "timings": totals,
        "splits": splits,
        "straightforward_sentences_timed": len(subset),
        "straightforward_layers_timed": problem.naive_layers,
        "speedup": speedup,
        "target": END_TO_END_TARGET,
        "met": speedup >= END_TO_END_TARGET,
        "max_abs_diff": max_difference(
            results["straightforward"][-1][0],
            batched_subset_scores,
            "end to end (batch-1 straightforward against batched project)",
        ),
    }


def run(bench: Bench) -> dict:
    settings = bench.settings
    pivot, target = corpus_pairs(settings.language, settings.scoring_sentences)
    captured = batched_states(bench.loaded, target, settings.batch_size, settings.max_tokens)
    pivot_states = batched_states(bench.loaded, pivot, settings.batch_size, settings.max_tokens)
    facts = bench.adapter.facts
    problem = Problem(
        write_vectors=all_write_vectors(bench.adapter),
        centroids=both_centroids(pivot_states.layer_output, captured.layer_output),
        naive_layers=strided_layers(facts.n_layers, settings.naive_layer_stride),
    )
    return {
        "sentences": len(target),
        "language": settings.language,
        "shape": {"layers": facts.n_layers, "d_model": facts.d_model, "d_mlp": facts.d_mlp, "centroid_types": 2},
        "maths": compare_maths(captured, problem, settings.repeats_slow),
        "end_to_end": compare_end_to_end(bench, target, problem, settings.repeats_slow),
    }

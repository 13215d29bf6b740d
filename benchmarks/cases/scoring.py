"""Case 1: neuron scoring, the project against the machine's limit and against two references.

Two comparisons on the same sentences and centroids:

* the scoring maths alone, every side given the same captured states: the project through
  the workflow's scoring loop (``score_layers`` on an ``InMemoryDump``), the project's
  straightforward baseline (``naive.py``) and the authors' loop (``authors_procedure.py``).
  Against the limit: the FLOPs of the one product the closed form cannot avoid per layer,
  [sentences x d_model] x [d_model x d_mlp], over the project's time, as a share of the
  matmul rate the speed probe measures in the same rounds;
* end to end, forward passes plus scoring: the references run one batch-1 forward pass per
  sentence (the authors' loop one per sentence and centroid type, with logits, as their
  script does), the project batches them. Against the limit: the ratio to plain batched
  forward passes of the same sentences in the same batches (no hooks, nothing kept).

Ratios against a reference say as much about the reference (its BLAS, its numpy) as about
the project; the limit-based figures do not depend on any reference. Centroids and the
baseline's write vectors are inputs (computed once, off the clock), and every side must
produce the same scores to 1e-4. The references are slow and their cost is the same for
every layer and every sentence, so they are timed on a subset of layers (and, end to end,
of sentences; the authors' loop, the slowest, on a smaller subset of sentences in both
comparisons) and their times scaled by the subset's share; the report says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from benchmarks.authors_procedure import WriteVectors, model_write_vectors, their_end_to_end, their_scores
from benchmarks.forward import plain_forward
from benchmarks.inputs import Bench, corpus_pairs
from benchmarks.machine import matmul_gflops
from benchmarks.naive import batch1_states, naive_centroid_scores
from benchmarks.states import (
    all_effective_activations,
    all_write_vectors,
    captured,
    centroids_of,
    dump_rows,
    score_array,
    stacked_centroids,
    workflow_scores,
)
from benchmarks.timing import Splits, Timing, ratio, split_timings, time_interleaved
from transfer_neurons.data.dumps import InMemoryDump
from transfer_neurons.model.adapters import FamilyAdapter

TOLERANCE = 1e-4
MATHS_TARGET = 100.0
END_TO_END_TARGET = 5.0
REFERENCES = ("straightforward", "authors")  # naive.py, authors_procedure.py
PROBE = "matmul_probe"  # the speed probe's matmul, run in every round beside the contenders


class ScoresDisagreeError(AssertionError):
    """A reference's and the project's scores differ by more than the tolerance."""


@dataclass(frozen=True)
class Problem:
    """What every side scores: the model's write vectors and both centroid types of every layer."""

    adapter: FamilyAdapter
    write_vectors: np.ndarray  # [L, n, d]: the baseline's, read once
    their_write_vectors: WriteVectors  # the authors' loop reads them from the model per (sentence, layer)
    centroids: dict[str, np.ndarray]  # type -> [L, d], as the workflow's scoring reads them
    reference_layers: list[int]  # the layers the references are timed on

    @property
    def n_layers(self) -> int:
        return self.write_vectors.shape[0]

    @property
    def layer_scale(self) -> float:
        return self.n_layers / len(self.reference_layers)

    @property
    def stacked(self) -> np.ndarray:
        """[T, L, d]."""
        return stacked_centroids(self.centroids)

    def naive_scores(self, residual: np.ndarray, activations: np.ndarray) -> np.ndarray:
        """The baseline's scores of ``reference_layers``: [L, S, *] inputs -> [T, len(reference_layers), n]."""
        layers = self.reference_layers
        return naive_centroid_scores(
            residual[layers], activations[layers], self.write_vectors[layers], self.stacked[:, layers]
        )

    def authors_scores(self, residual: np.ndarray, activations: np.ndarray) -> np.ndarray:
        """The authors' loop over the same states: [T, len(reference_layers), n]."""
        return their_scores(residual, activations, self.their_write_vectors, self.stacked, self.reference_layers)

    def project_table(self, dump: InMemoryDump) -> pl.DataFrame:
        """The workflow's scoring loop, every layer: the tidy table it writes."""
        return workflow_scores(self.adapter, dump, self.centroids)

    def project_on_reference_layers(self, table: pl.DataFrame) -> np.ndarray:
        """The table as [T, len(reference_layers), n], to compare with the references."""
        return score_array(table, self.n_layers, self.write_vectors.shape[1])[:, self.reference_layers]

    def project_subset(self, dump: InMemoryDump, stride: int) -> np.ndarray:
        """The project's scores of every ``stride``-th sentence on the reference layers (off the clock)."""
        return self.project_on_reference_layers(self.project_table(dump_rows(dump, slice(None, None, stride))))


def strided_layers(n_layers: int, stride: int) -> list[int]:
    """Every ``stride``-th layer counted from the last, so that the deepest layer is always in."""
    return sorted(range(n_layers - 1, -1, -stride))


def max_difference(first: np.ndarray, second: np.ndarray, what: str) -> float:
    """Largest absolute score difference; fails above ``TOLERANCE``."""
    difference = float(np.abs(first - second).max())
    if not difference <= TOLERANCE:
        raise ScoresDisagreeError(f"{what}: scores differ by {difference:.3g} > {TOLERANCE}")
    return difference


def necessary_flops(n_sentences: int, n_layers: int, d_model: int, d_mlp: int) -> float:
    """FLOPs of the one product per layer no exact scorer avoids: [S x d_model] x [d_model x d_mlp]."""
    return 2.0 * n_sentences * d_model * d_mlp * n_layers


def against_limit(flops: float, timing: Timing, probe_gflops: list[float]) -> dict:
    """The measured time against the matmul rate of the speed probe.

    The best probe of the rounds is taken as the rate, and the median time as ours, so a busy
    phase can lower the share, never raise it.
    """
    rate = max(probe_gflops) * 1e9
    return {
        "necessary_gflop": flops / 1e9,
        "achieved_gflops": flops / timing.median / 1e9,
        "probe_gflops": rate / 1e9,
        "probe_gflops_per_round": probe_gflops,
        "seconds_at_probe_rate": flops / rate,
        "share_of_probe": flops / timing.median / rate,
    }


def compare_maths(dump: InMemoryDump, problem: Problem, authors_stride: int, repeats: int) -> dict:
    """Every side on the same captured states, with the speed probe in every round.

    The authors' loop scores every ``authors_stride``-th sentence only; its time is scaled up.
    """
    residual, activations = dump.all_layers("residual_pre_mlp"), all_effective_activations(dump)
    few = slice(None, None, authors_stride)
    timings, results = time_interleaved(
        {
            "straightforward": lambda: problem.naive_scores(residual, activations),
            "authors": lambda: problem.authors_scores(residual[:, few], activations[:, few]),
            "project": lambda: problem.project_table(dump),
            PROBE: matmul_gflops,
        },
        repeats,
    )
    del timings[PROBE]
    n_layers, n_sentences, d_model = residual.shape
    authors_sentences = len(range(n_sentences)[few])
    timings["straightforward"] = timings["straightforward"].scaled(problem.layer_scale)
    timings["authors"] = timings["authors"].scaled(problem.layer_scale * n_sentences / authors_sentences)
    speedups = {name: ratio(timings[name], timings["project"]) for name in REFERENCES}
    project = problem.project_on_reference_layers(results["project"][-1])
    flops = necessary_flops(n_sentences, n_layers, d_model, activations.shape[2])
    return {
        "timings": timings,
        "limit": against_limit(flops, timings["project"], results[PROBE]),
        "speedups": speedups,
        "target": MATHS_TARGET,
        "met": speedups["straightforward"] >= MATHS_TARGET,
        "reference_layers_timed": problem.reference_layers,
        "sentences_timed": {"straightforward": n_sentences, "authors": authors_sentences},
        "max_abs_diff": {
            "straightforward": max_difference(
                results["straightforward"][-1], project, "scoring maths (straightforward against the project)"
            ),
            "authors": max_difference(
                results["authors"][-1],
                problem.project_subset(dump, authors_stride),
                "scoring maths (authors against the project)",
            ),
        },
    }


def compare_end_to_end(bench: Bench, sentences: list[str], problem: Problem, repeats: int) -> dict:
    """Forward passes plus scoring, with the time split between the two, and plain forward passes beside them."""
    settings = bench.settings
    strides = {"straightforward": settings.batch1_stride, "authors": settings.authors_stride}
    subsets = {name: sentences[::stride] for name, stride in strides.items()}

    def straightforward():
        splits = Splits()
        with splits.measure("forward"):
            residual, activations = batch1_states(bench.loaded, subsets["straightforward"])
        with splits.measure("scoring"):
            scores = problem.naive_scores(residual, activations)
        return scores, splits

    def authors():
        return their_end_to_end(bench.loaded, subsets["authors"], problem.stacked, problem.reference_layers)

    def project():
        splits = Splits()
        with splits.measure("forward"):
            dump = captured(bench.loaded, sentences, settings.batch_size, settings.max_batch_tokens)
        with splits.measure("scoring"):
            # Timed only: the agreement check below rescores the references' subset.
            problem.project_table(dump)
        return dump, splits

    def plain():
        plain_forward(
            bench.model, bench.tokenizer, sentences, settings.batch_size, max_batch_tokens=settings.max_batch_tokens
        )

    timings, results = time_interleaved(
        {"straightforward": straightforward, "authors": authors, "project": project, "plain_forward": plain},
        repeats,
    )
    splits = {name: split_timings([run_splits for _, run_splits in results[name]]) for name in (*REFERENCES, "project")}
    for name in REFERENCES:
        sentence_scale = len(sentences) / len(subsets[name])
        splits[name] = {
            "forward": splits[name]["forward"].scaled(sentence_scale),
            "scoring": splits[name]["scoring"].scaled(sentence_scale * problem.layer_scale),
        }
    totals = {name: phases["forward"].plus(phases["scoring"]) for name, phases in splits.items()}
    totals["plain_forward"] = timings["plain_forward"]
    speedups = {name: ratio(totals[name], totals["project"]) for name in REFERENCES}
    # The project's scores of the same sentences from its batched, left-padded forward passes must match.
    batched = results["project"][-1][0]
    return {
        "timings": totals,
        "splits": splits,
        "limit": {"forward_overhead": totals["project"].median / totals["plain_forward"].median},
        "speedups": speedups,
        "target": END_TO_END_TARGET,
        "met": speedups["straightforward"] >= END_TO_END_TARGET,
        "reference_layers_timed": problem.reference_layers,
        "sentences_timed": {name: len(subset) for name, subset in subsets.items()},
        "max_abs_diff": {
            name: max_difference(
                results[name][-1][0],
                problem.project_subset(batched, strides[name]),
                f"end to end (batch-1 {name} against the batched project)",
            )
            for name in REFERENCES
        },
    }


def run(bench: Bench) -> dict:
    settings = bench.settings
    pivot, target = corpus_pairs(settings.language, settings.scoring_sentences)
    target_dump = captured(bench.loaded, target, settings.batch_size, settings.max_batch_tokens)
    pivot_dump = captured(bench.loaded, pivot, settings.batch_size, settings.max_batch_tokens)
    facts = bench.adapter.facts
    problem = Problem(
        adapter=bench.adapter,
        write_vectors=all_write_vectors(bench.adapter),
        their_write_vectors=model_write_vectors(bench.loaded),
        centroids=centroids_of(pivot_dump, target_dump),
        reference_layers=strided_layers(facts.n_layers, settings.naive_layer_stride),
    )
    return {
        "sentences": len(target),
        "language": settings.language,
        "shape": {"layers": facts.n_layers, "d_model": facts.d_model, "d_mlp": facts.d_mlp, "centroid_types": 2},
        "maths": compare_maths(target_dump, problem, settings.authors_stride, settings.repeats_slow),
        "end_to_end": compare_end_to_end(bench, target, problem, settings.repeats_slow),
    }

"""The amplification sweep: does strengthening the transfer neurons help, beyond as many matched neurons?

For the Type-1 and Type-2 neurons and their magnitude-matched controls, the activations are scaled
by each factor of ``evaluation.amplification.factors`` (0 removes them, 1 is the normal run, 2
doubles them) and three measures are taken on the language: QA F1 (the paper's protocol), accuracy
on the built-in multiple-choice task, and mutual k-NN alignment of English and L2 states. Every
set at every factor is one run; the runs share passes as rows (``model.hooks``). Factor 1 is the
normal run itself: scaling by 1 changes nothing (a test checks it does not).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from transfer_neurons.data.dumps import Dump, kept_pairs
from transfer_neurons.data.qa import load_qa
from transfer_neurons.data.tidy import labelled
from transfer_neurons.evaluation.alignment import check_knn_ks, nearest_neighbours
from transfer_neurons.evaluation.choices import accuracy_by_run, read_items
from transfer_neurons.evaluation.conditions import condition_info, condition_neurons, select_conditions
from transfer_neurons.evaluation.qa import f1_by_run
from transfer_neurons.evaluation.states import alignment_of, states_by_run
from transfer_neurons.model.hooks import NeuronEdit
from transfer_neurons.model.loading import LoadedModel, load_model
from transfer_neurons.names import NORMAL, PIVOT_SIDE

MEASURES = ("qa_f1", "choice_accuracy", "knn_share")


@dataclass(frozen=True)
class AmplificationSettings:
    """The ``evaluation.amplification`` config section, with the QA settings it reuses."""

    factors: tuple[float, ...]  # 1 (the normal run) is added to the table, not run
    kinds: tuple[str, ...]  # the condition kinds swept (transfer, magnitude_matched, ...)
    seeds: tuple[int, ...] | None  # the drawn controls' seeds (None: every one)
    positions: str  # where QA and the multiple-choice task scale the neurons; the states take the last token
    qa_template: str
    qa_max_new_tokens: int
    qa_stop: str
    question_filter: str
    qa_limit: int | None
    choice_limit: int | None
    knn_k: int
    last_layer: str  # runtime.last_layer: how the alignment reads the last layer
    batch_size: int
    max_batch_tokens: int | None


def sweep_runs(conditions: pl.DataFrame, factors: Sequence[float], positions: str) -> dict[str, NeuronEdit]:
    """``{condition}@x{factor}`` runs of every swept condition at every factor but 1, and the normal run."""
    runs = {NORMAL: NeuronEdit()}
    for condition in conditions["condition"].unique(maintain_order=True).to_list():
        if condition == NORMAL:
            continue
        neurons = condition_neurons(conditions, condition)
        for factor in factors:
            if factor != 1:
                runs[run_name(condition, factor)] = NeuronEdit(neurons, float(factor), positions)
    return runs


def run_name(condition: str, factor: float) -> str:
    return f"{condition}@x{factor:g}"


def unstacked(
    values: Mapping[str, Sequence[float] | np.ndarray], conditions: Sequence[str], factors: Sequence[float],
    measure: str, units: Sequence[str],
) -> pl.DataFrame:  # fmt: skip
    """Tidy rows (measure, condition, factor, unit, value) of each condition at every factor, factor 1
    being the normal run's values."""
    frames = []
    for condition in conditions:
        for factor in sorted({*factors, 1.0}):
            name = NORMAL if factor == 1 or condition == NORMAL else run_name(condition, factor)
            frames.append(
                pl.DataFrame(
                    {
                        "measure": measure,
                        "condition": condition,
                        "factor": float(factor),
                        "unit": list(units),
                        "value": np.asarray(values[name], dtype=np.float64),
                    }
                )
            )
    return pl.concat(frames)


def qa_values(
    loaded: LoadedModel, records: list[dict], lang: str, runs: Mapping[str, NeuronEdit], settings: AmplificationSettings
) -> dict[str, list[float]]:
    """Per run, each question's MKQA F1."""
    return f1_by_run(loaded, records, lang, runs, template=settings.qa_template,
                     max_new_tokens=settings.qa_max_new_tokens, stop=settings.qa_stop,
                     max_batch_tokens=settings.max_batch_tokens)  # fmt: skip


def choice_values(
    loaded: LoadedModel, items: list[dict], runs: Mapping[str, NeuronEdit], settings: AmplificationSettings
) -> dict[str, np.ndarray]:
    """Per run, each item's accuracy (0/1)."""
    scores = accuracy_by_run(loaded, items, runs, batch_size=settings.batch_size,
                             max_batch_tokens=settings.max_batch_tokens)  # fmt: skip
    return {name: table["acc"].to_numpy() for name, table in scores.items()}


def knn_values(
    loaded: LoadedModel, test_dump: Dump, sentences: Sequence[str], runs: Mapping[str, NeuronEdit],
    settings: AmplificationSettings,
) -> dict[str, np.ndarray]:  # fmt: skip
    """Per run, each pair's share of agreeing mutual k-NN neighbours, averaged over layers (last token)."""
    pivot_states = test_dump.layer_states(settings.last_layer)
    check_knn_ks([settings.knn_k], pivot_states.shape[1])
    last_token_runs = {name: NeuronEdit(edit.scaled, edit.factor, "last") for name, edit in runs.items()}
    states = states_by_run(loaded, sentences, last_token_runs, batch_size=settings.batch_size,
                           max_batch_tokens=settings.max_batch_tokens,
                           pivot_activations=test_dump.all_layers("neuron_activations"),
                           last_layer=settings.last_layer)  # fmt: skip
    neighbours = [nearest_neighbours(layer, settings.knn_k) for layer in pivot_states]
    return {name: alignment_of(neighbours, pivot_states, target, [settings.knn_k])[1]["knn_share"]
            for name, target in states.items()}  # fmt: skip


def run_amplification(
    manifest: Path, conditions: Path, qa_source: dict, task_file: Path, test_pairs: Path, test_dump: Path,
    settings: AmplificationSettings, *, main_label: str, device: str, labels: dict, dtype: str = "auto",
) -> pl.DataFrame:  # fmt: skip
    """The ``evaluate_amplification`` rule for one language: one row per measure, condition, factor and
    unit (question, item or test pair)."""
    lang = labels["language"]
    loaded = load_model(manifest, device, dtype=dtype)
    table = select_conditions(pl.read_parquet(conditions), (NORMAL, *settings.kinds), main_label, seeds=settings.seeds)
    runs = sweep_runs(table, settings.factors, settings.positions)
    names = table["condition"].unique(maintain_order=True).to_list()
    records = load_qa(qa_source, [lang], settings.qa_limit, question_filter=settings.question_filter)
    items = read_items(task_file, settings.choice_limit)
    pairs = kept_pairs(test_pairs)
    dump = Dump(Path(test_dump) / PIVOT_SIDE)
    sentences = pairs["target_text"].to_list()
    parts = [
        unstacked(qa_values(loaded, records, lang, runs, settings), names, settings.factors, "qa_f1",
                  [str(record.get("example_id", index)) for index, record in enumerate(records)]),
        unstacked(choice_values(loaded, items, runs, settings), names, settings.factors, "choice_accuracy",
                  [str(item.get("id", index)) for index, item in enumerate(items)]),
        unstacked(knn_values(loaded, dump, sentences, runs, settings), names, settings.factors, "knn_share",
                  [str(index) for index in range(pairs.height)]),
    ]  # fmt: skip
    return labelled(pl.concat(parts).join(condition_info(table), on="condition", how="left"), **labels)

"""Language specificity of neurons: correlation ratio eta^2 and one-way ANOVA by language."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
from scipy import stats

from transfer_neurons.data.dumps import Dump
from transfer_neurons.data.tidy import labelled
from transfer_neurons.names import PIVOT_SIDE, TARGET_SIDE


def eta_squared_anova(activations: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per neuron, eta^2 = SS_between / SS_total and the one-way ANOVA p-value.

    activations [N, n] over sentences of all languages, labels [N] language codes -> ([n], [n]).
    """
    activations = activations.astype(np.float64)
    groups = np.unique(labels)
    grand_mean = activations.mean(axis=0)
    ss_total = ((activations - grand_mean) ** 2).sum(axis=0)
    ss_between = np.zeros(activations.shape[1])
    for group in groups:
        members = activations[labels == group]
        ss_between += len(members) * (members.mean(axis=0) - grand_mean) ** 2
    ss_within = ss_total - ss_between
    eta_squared = np.where(ss_total > 0, ss_between / np.where(ss_total > 0, ss_total, 1), 0.0)
    df_between, df_within = len(groups) - 1, len(labels) - len(groups)
    with np.errstate(divide="ignore", invalid="ignore"):
        f_statistic = (ss_between / df_between) / (ss_within / df_within)
    p_values = np.where(np.isfinite(f_statistic), stats.f.sf(f_statistic, df_between, df_within), 1.0)
    return eta_squared, p_values


def run_specificity(
    test_dumps: dict[str, Path], top_lists: dict[str, Path], *, pivot: str, main_label: str, labels: dict
) -> pl.DataFrame:
    """eta^2 and ANOVA p of every top-N neuron over the test sentences of all languages."""
    first = next(iter(test_dumps.values()))
    sources = {pivot: Dump(Path(first) / PIVOT_SIDE)}
    sources.update({lang: Dump(Path(path) / TARGET_SIDE) for lang, path in test_dumps.items()})
    frames = []
    for lang, top_path in top_lists.items():
        top = pl.read_parquet(top_path).filter(pl.col("top_n_label") == str(main_label))
        for (neuron_type, layer), group in top.group_by("neuron_type", "layer", maintain_order=True):
            neurons = group["neuron"].to_numpy()
            activations = np.concatenate(
                [dump.layer("neuron_activations", layer)[:, neurons] for dump in sources.values()]
            )
            language_labels = np.concatenate([[name] * dump.meta["n_sentences"] for name, dump in sources.items()])
            eta, p_value = eta_squared_anova(activations, language_labels)
            frames.append(pl.DataFrame({"language": lang, "neuron_type": neuron_type, "layer": layer,
                                        "neuron": neurons, "eta_squared": eta, "p_value": p_value}))  # fmt: skip
    return labelled(pl.concat(frames), **labels)

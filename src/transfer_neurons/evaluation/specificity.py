"""Language specificity of neurons: correlation ratio eta^2 and one-way ANOVA, by language and by family."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import polars as pl
from scipy import stats

from transfer_neurons.data.dumps import Dump
from transfer_neurons.data.languages import language
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
    # F is infinite when the groups are perfectly apart (no variance within them): p = 0; a neuron
    # that never varies (0 / 0) has no evidence of specificity: p = 1.
    p_values = np.where(
        np.isnan(f_statistic), 1.0, np.where(np.isinf(f_statistic), 0.0, stats.f.sf(f_statistic, df_between, df_within))
    )
    return eta_squared, p_values


def language_groups(languages: Iterable[str], groups: Mapping[str, Sequence[str]] | None) -> dict[str, str]:
    """Language -> its group: ``groups`` (group -> languages) where given, else its genealogical family.

    Fails naming the option when a language is in no group or in two.
    """
    if groups is None:
        return {lang: language(lang).family for lang in languages}
    group_of: dict[str, str] = {}
    for group, members in groups.items():
        for lang in members:
            if lang in group_of:
                raise ValueError(f"evaluation.specificity.groups: {lang!r} is in {group_of[lang]!r} and {group!r}")
            group_of[lang] = group
    missing = [lang for lang in languages if lang not in group_of]
    if missing:
        raise ValueError(f"evaluation.specificity.groups: no group for {', '.join(missing)}")
    return {lang: group_of[lang] for lang in languages}


def english_source(test_dumps: Mapping[str, Path], english_pairs: str | None) -> Path:
    """The test dump whose English (pivot) side gives the English sentences: ``english_pairs``'s
    (``evaluation.specificity.english_pairs``; the authors' ``en_mono_test`` is the English side of
    the nl test pairs), or the first language's when it is null."""
    if english_pairs is None:
        return Path(next(iter(test_dumps.values())))
    if english_pairs not in test_dumps:
        raise ValueError(
            f"evaluation.specificity.english_pairs: {english_pairs!r} is not one of the languages {list(test_dumps)}"
        )
    return Path(test_dumps[english_pairs])


def run_specificity(
    test_dumps: dict[str, Path], top_lists: dict[str, Path], *, pivot: str, main_label: str,
    groups: Mapping[str, Sequence[str]] | None, labels: dict, english_pairs: str | None = None,
) -> pl.DataFrame:  # fmt: skip
    """eta^2 and ANOVA p of every top-N neuron over the test sentences of all languages, with the
    neuron's ``rank`` in its list (1 = best).

    As in the paper's test (its htest.py), the groups are two: for language X's neurons, X's
    sentences against every other language's (``grouping = language``), and the sentences of X's
    group against the rest (``grouping = family``). The English sentences are the English side of
    ``english_pairs``'s test pairs (``english_source``).
    """
    sources = {pivot: Dump(english_source(test_dumps, english_pairs) / PIVOT_SIDE)}
    sources.update({lang: Dump(Path(path) / TARGET_SIDE) for lang, path in test_dumps.items()})
    group_of = language_groups(list(sources), groups)
    sentence_languages = np.concatenate([[name] * dump.meta["n_sentences"] for name, dump in sources.items()])
    sentence_groups = np.array([group_of[lang] for lang in sentence_languages])
    frames = []
    for lang, top_path in top_lists.items():
        top = pl.read_parquet(top_path).filter(pl.col("top_n_label") == str(main_label))
        binary_labels = {"language": sentence_languages == lang, "family": sentence_groups == group_of[lang]}
        for (neuron_type, layer), group in top.group_by("neuron_type", "layer", maintain_order=True):
            neurons = group["neuron"].to_numpy()
            activations = np.concatenate(
                [dump.layer("neuron_activations", layer)[:, neurons] for dump in sources.values()]
            )
            for grouping, in_group in binary_labels.items():
                eta, p_value = eta_squared_anova(activations, in_group)
                frames.append(pl.DataFrame({"language": lang, "group": group_of[lang], "grouping": grouping,
                                            "neuron_type": neuron_type, "layer": layer, "neuron": neurons,
                                            "rank": group["rank"], "eta_squared": eta,
                                            "p_value": p_value}))  # fmt: skip
    return labelled(pl.concat(frames), **labels)

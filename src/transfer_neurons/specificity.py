"""Language specificity of neurons: correlation ratio eta^2 and one-way ANOVA by language."""

from __future__ import annotations

import numpy as np
from scipy import stats


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

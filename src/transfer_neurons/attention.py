"""How the last token's attention changes when neurons are deactivated."""

from __future__ import annotations

import numpy as np


def _clip(distribution: np.ndarray) -> np.ndarray:
    return np.clip(distribution, 1e-12, None)


def jensen_shannon(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """JS divergence (nats) between distributions along the last axis."""
    middle = (p + q) / 2
    kl_pm = (p * (np.log(_clip(p)) - np.log(_clip(middle)))).sum(-1)
    kl_qm = (q * (np.log(_clip(q)) - np.log(_clip(middle)))).sum(-1)
    return (kl_pm + kl_qm) / 2


def entropy(p: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) along the last axis."""
    return -(p * np.log(_clip(p))).sum(-1)

"""The names that rules, tables and code share: neuron types, condition kinds, condition and metric names.

A condition's name is built here and nowhere else (``random_type1_s0``, ``type1@100``), and so
is every metric name (``mutual_knn_k5``, ``state_cosine_parallel``). Free of heavy imports on
purpose: the Snakefile imports it at start-up, which happens in every cluster job too.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from enum import StrEnum

PIVOT_SIDE, TARGET_SIDE = "pivot", "target"
SIDES = (PIVOT_SIDE, TARGET_SIDE)  # English and L2 sentences of a pair
SPLITS = ("train", "test")


class NeuronType(StrEnum):
    """Type-1 neurons move states toward the shared space, Type-2 toward the output language's."""

    TYPE1 = "type1"
    TYPE2 = "type2"


NEURON_TYPES = tuple(neuron_type.value for neuron_type in NeuronType)


class ConditionKind(StrEnum):
    """What an intervention condition deactivates (the ``kind`` column of every evaluation table)."""

    NORMAL = "normal"  # nothing
    TRANSFER = "transfer"  # the top-N neurons of one type
    RANDOM = "random"  # as many random neurons from the type's candidate layers
    LAYER_MATCHED = "layer_matched"  # as many random neurons per layer as the transfer neurons
    MAGNITUDE_MATCHED = "magnitude_matched"  # per transfer neuron, one of its layer with a similar write size
    LAPE = "lape"  # the language's LAPE language-specific neurons (no neuron type)


NORMAL = ConditionKind.NORMAL.value
# Drawn sets the transfer neurons are compared against, each of one neuron type.
BASELINE_KINDS = (
    ConditionKind.RANDOM.value,
    ConditionKind.LAYER_MATCHED.value,
    ConditionKind.MAGNITUDE_MATCHED.value,
)


def sweep_suffix(top_n_label: str | None, main_label: str | None) -> str:
    """``@label`` for conditions at an N of the sweep other than the main one."""
    return "" if top_n_label is None or str(top_n_label) == str(main_label) else f"@{top_n_label}"


def condition_group(kind: str, neuron_type: str | None = None) -> str:
    """A condition's name without seed or N: ``normal``, ``type1``, ``random_type1``..."""
    if kind == ConditionKind.NORMAL:
        return NORMAL
    if kind == ConditionKind.TRANSFER:
        return str(neuron_type)
    return str(kind) if neuron_type is None else f"{kind}_{neuron_type}"


def condition_name(kind: str, neuron_type: str | None = None, seed: int | None = None, suffix: str = "") -> str:
    """The unique name of one condition: its group, the sweep suffix, then ``_s{seed}`` for drawn sets."""
    name = condition_group(kind, neuron_type) + ("" if kind == ConditionKind.NORMAL else suffix)
    return name if seed is None else f"{name}_s{seed}"


# The patching table's ``neuron_set`` of the transfer neurons (its control's is the control's condition group).
TRANSFER_SET = "transfer"


# --- metric names of the state analysis ---------------------------------------------------
PAIRINGS = ("parallel", "non_parallel")  # English-L2 pairs of the same sentence, or of different ones
STATE_COSINE = "state_cosine"
ACTIVATION_COSINE = "activation_cosine"


KNN_PREFIX = "mutual_knn_k"


def knn_metric(k: int) -> str:
    """Mutual k-nearest-neighbour alignment of English and L2 states."""
    return f"{KNN_PREFIX}{k}"


def cosine_metric(quantity: str, pairing: str) -> str:
    """Mean cosine of English and L2 ``quantity`` (states or activations) over pairs of one pairing."""
    return f"{quantity}_{pairing}"


# Condition groups in the order figures and tables show them.
GROUP_ORDER = [
    NORMAL,
    *NEURON_TYPES,
    *(condition_group(kind, neuron_type) for kind in BASELINE_KINDS for neuron_type in NEURON_TYPES),
    ConditionKind.LAPE.value,
]


def expand_groups(groups: Iterable[str], seeds: Sequence[int]) -> list[str]:
    """Condition names of condition groups: a drawn baseline's group gets one name per seed
    (``random_type1`` -> ``random_type1_s0``, ...); other groups are condition names already."""
    drawn = {condition_group(kind, neuron_type) for kind in BASELINE_KINDS for neuron_type in NEURON_TYPES}
    names = []
    for group in groups:
        names.extend([f"{group}_s{seed}" for seed in seeds] if group in drawn else [group])
    return names

"""Language-specific MLP neurons by Language Activation Probability Entropy (LAPE).

LAPE comes from Tang et al., "Language-Specific Neurons: The Key to Multilingual Capabilities in
Large Language Models" (ACL 2024); the reference code is github.com/RUCAIBox/Language-Specific-Neurons,
where ``activation.py`` counts activations and ``identify.py`` selects the neurons. This module
re-implements the selection with numpy; the counting is done by the model hooks elsewhere.

The steps:

1. Counting (``activation.py``). Each language's corpus is run through the model; a neuron (one
   position of the MLP's intermediate layer) counts as active on a token when the output of the MLP's
   activation function is greater than zero. For gated MLPs such as LLaMA's this is act_fn(gate_proj(x)),
   before the product with up_proj; for BLOOM it is the GELU output of dense_h_to_4h. Every token
   position is counted, and the number of tokens per language is kept alongside.
2. Activation probability (``identify.py``). Count divided by the language's token count, in float32
   as in the reference, which divides integer tensors. ``activation_probabilities`` does this.
3. Entropy. For each neuron the probabilities over languages are divided by their sum, giving a
   distribution over languages, and LAPE is its Shannon entropy with the natural log and 0 log 0 = 0.
   A neuron never active in any language has no distribution; the reference gives it entropy 0 (its
   0/0 is set to 0), and so does ``lape_entropy``. Low entropy means the neuron fires mostly for few
   languages.
4. Filter. A threshold is taken over every probability of every (language, layer, neuron): the k-th
   smallest, k = round(count * filter_rate), 1-based, ties counted with multiplicity. A neuron is kept
   only if at least one language's probability is strictly greater than it; the others, which fire
   rarely in all languages, get entropy +inf so they rank last. Never-active neurons always fail it.
5. Ranking. The round(n_layers * d_mlp * top_rate) neurons with the lowest entropy are taken, over
   all layers together. If fewer neurons passed the filter, the rest are filled up from the +inf ones,
   as the reference's top-k does.
6. Languages. A second threshold, the k-th smallest probability with k = round(count *
   activation_bar_ratio), is computed the same way. A taken neuron belongs to every language whose
   probability is strictly greater than it: to one, several, or none.

The output is, per language, the sorted (layer, neuron) pairs. Where this differs from the reference:

* The reference's list has one entry per language only up to the last language that got a neuron
  (it splits by a bincount, which is no longer than the highest language index found); here every
  language gets an entry, possibly empty. Each language's set is the same.
* Among neurons with exactly equal entropy at the cut of step 5, ``torch.topk`` keeps an unspecified
  subset (it depends on its partial-sort internals); here the lower (layer, neuron) index comes first.
* The reference computes the entropy in float32, where the rounding of its log and sum depends on the
  torch build and CPU. Here it is float64 from the same float32 probabilities, summed in a fixed
  order so that equal distributions give equal entropies. Two neurons whose entropies differ by about
  float32 rounding (~1e-7) and sit on the two sides of the cut may therefore swap. The thresholds and
  all comparisons of probabilities use the float32 values and match the reference exactly.
* A k of 0 in step 4 or 6 is an error in the reference too (``kthvalue``); here it is a ValueError.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LapeSettings:
    # Fraction of all (layer, neuron) positions taken in step 5: the round(top_rate * n_layers * d_mlp)
    # eligible neurons with the lowest entropy. The reference first used 0.05, then settled on 0.01.
    top_rate: float = 0.01
    # Quantile of all activation probabilities used as the filter of step 4; a neuron must exceed it
    # (strictly) in at least one language to be eligible.
    filter_rate: float = 0.95
    # Quantile of all activation probabilities used in step 6; a taken neuron is assigned to each
    # language in which it exceeds it (strictly).
    activation_bar_ratio: float = 0.95

    def __post_init__(self) -> None:
        for name in ("top_rate", "filter_rate", "activation_bar_ratio"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:  # also rejects NaN
                raise ValueError(f"LapeSettings.{name} must lie in [0, 1], got {value!r}")


def activation_probabilities(active_counts: np.ndarray, token_counts: np.ndarray) -> np.ndarray:
    """Per language, the fraction of its tokens on which each neuron was active.

    active_counts [n_languages, n_layers, d_mlp], token_counts [n_languages] -> float32, same shape as
    active_counts.
    """
    counts = np.asarray(active_counts)
    tokens = np.asarray(token_counts)
    if counts.ndim != 3 or tokens.ndim != 1 or counts.shape[0] != tokens.shape[0]:
        raise ValueError(
            "active_counts must be [n_languages, n_layers, d_mlp] and token_counts [n_languages]; "
            f"got active_counts {counts.shape} and token_counts {tokens.shape}"
        )
    if not np.all(tokens > 0):
        raise ValueError(f"every language needs a positive token count, got {tokens.tolist()}")
    if np.any(counts < 0):
        raise ValueError("active_counts must not be negative")
    if np.any(counts > tokens[:, None, None]):
        raise ValueError("a neuron cannot be active on more tokens than its language has")
    # float32 on both sides, then a float32 division: what torch does with the reference's integer
    # tensors. It matters beyond precision: counts that differ slightly can round to the same float32,
    # and the thresholds later compare these values strictly.
    return counts.astype(np.float32) / tokens.astype(np.float32)[:, None, None]


def lape_entropy(probabilities: np.ndarray) -> np.ndarray:
    """Entropy (natural log) of each neuron's activation probabilities normalised over languages.

    probabilities [n_languages, n_layers, d_mlp] -> float64 [n_layers, d_mlp]. A neuron with zero
    probability in every language gets 0, as in the reference.
    """
    probs = _validated_probabilities(probabilities)
    # Sorting over languages fixes the summation order, so neurons whose probabilities are the same
    # values in another language order get bit-identical entropies and tie as they should.
    probs = np.sort(probs.astype(np.float64), axis=0)
    totals = probs.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        shares = np.where(totals > 0, probs / totals, 0.0)
        terms = np.where(shares > 0, shares * np.log(shares), 0.0)
    # 0.0 - x rather than -x so that an entropy of zero is +0.0, not -0.0.
    return 0.0 - terms.sum(axis=0)


def language_specific_neurons(
    probabilities: np.ndarray, settings: LapeSettings = LapeSettings()
) -> list[list[tuple[int, int]]]:
    """Per language (in input order), the sorted (layer, neuron) pairs LAPE assigns to it.

    probabilities [n_languages, n_layers, d_mlp], as from ``activation_probabilities``.
    """
    probs = _validated_probabilities(probabilities)
    n_languages, _, d_mlp = probs.shape
    filter_threshold = _kth_smallest(probs, settings.filter_rate, "filter_rate")
    activation_bar = _kth_smallest(probs, settings.activation_bar_ratio, "activation_bar_ratio")
    eligible = _exceeds_in_some_language(probs, filter_threshold)
    taken = _lowest_entropy(lape_entropy(probs), eligible, settings.top_rate)
    layers, neurons = np.divmod(taken, d_mlp)
    # [n_languages, n_taken]: which languages each taken neuron belongs to.
    assigned = probs[:, layers, neurons] > activation_bar
    return [
        sorted(zip(layers[assigned[language]].tolist(), neurons[assigned[language]].tolist(), strict=True))
        for language in range(n_languages)
    ]


def _validated_probabilities(probabilities: np.ndarray) -> np.ndarray:
    probs = np.asarray(probabilities)
    if probs.ndim != 3 or 0 in probs.shape:
        raise ValueError(f"probabilities must be a non-empty [n_languages, n_layers, d_mlp] array, got {probs.shape}")
    if not np.issubdtype(probs.dtype, np.floating):
        raise ValueError(f"probabilities must be floating point, got {probs.dtype}; see activation_probabilities")
    # The reference stops on a NaN entropy; NaN or negative probabilities come from bad counts.
    if not np.all((probs >= 0) & (probs <= 1)):
        raise ValueError("probabilities must lie in [0, 1]")
    return probs


def _kth_smallest(probs: np.ndarray, rate: float, name: str) -> np.floating:
    """The k-th smallest of all probabilities, k = round(size * rate), 1-based (torch.kthvalue)."""
    # Python's round on a Python float, as in the reference: halves go to the even neighbour.
    k = round(probs.size * rate)
    if k < 1:
        raise ValueError(f"{name}={rate} selects no probability out of {probs.size} (round(size * rate) = 0)")
    return np.partition(probs.ravel(), k - 1)[k - 1]


def _exceeds_in_some_language(probs: np.ndarray, threshold: np.floating) -> np.ndarray:
    """[n_layers, d_mlp] mask of neurons whose probability is strictly above threshold in some language."""
    # The threshold is one of the float32 values, compared in float32 as in the reference, so a
    # neuron whose highest probability equals it is dropped.
    return np.asarray((probs > threshold).any(axis=0))


def _lowest_entropy(entropy: np.ndarray, eligible: np.ndarray, top_rate: float) -> np.ndarray:
    """Flat (layer * d_mlp + neuron) indices of the round(size * top_rate) lowest-entropy neurons."""
    count = round(entropy.size * top_rate)
    # Ineligible neurons stay rankable behind all eligible ones, as the reference's +inf does, so
    # that the count is the same even when few neurons pass the filter.
    ranked = np.where(eligible, entropy, np.inf).ravel()
    # Stable sort: equal entropies are taken in index order (see the module docstring).
    return np.argsort(ranked, kind="stable")[:count]

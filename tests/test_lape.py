import math

import numpy as np
import pytest

from transfer_neurons.detection.lape import (
    LapeSettings,
    activation_probabilities,
    language_specific_neurons,
    lape_entropy,
)


def test_defaults_are_the_reference_values():
    settings = LapeSettings()
    assert (settings.top_rate, settings.filter_rate, settings.activation_bar_ratio) == (0.01, 0.95, 0.95)


# Hand-worked example: languages en, zh, fr with 10, 20 and 40 tokens; one layer of six neurons.
# Active counts per neuron (en, zh, fr) and the probabilities count / tokens:
#   n0: ( 8,  0,  0) -> (0.8, 0,   0  )  en only
#   n1: ( 0, 10, 20) -> (0,   0.5, 0.5)  zh and fr equally
#   n2: ( 3,  6, 12) -> (0.3, 0.3, 0.3)  uniform
#   n3: ( 0,  0,  0) -> (0,   0,   0  )  never active
#   n4: ( 6,  4,  8) -> (0.6, 0.2, 0.2)  mostly en
#   n5: ( 1,  2,  0) -> (0.1, 0.1, 0  )  rare
COUNTS = np.array(
    [
        [8, 0, 3, 0, 6, 1],
        [0, 10, 6, 0, 4, 2],
        [0, 20, 12, 0, 8, 0],
    ]
).reshape(3, 1, 6)
TOKENS = np.array([10, 20, 40])


def test_hand_worked_example():
    probs = activation_probabilities(COUNTS, TOKENS)
    assert probs.dtype == np.float32
    np.testing.assert_array_equal(
        probs[:, 0, :],
        np.array(
            [[0.8, 0, 0.3, 0, 0.6, 0.1], [0, 0.5, 0.3, 0, 0.2, 0.1], [0, 0.5, 0.3, 0, 0.2, 0]],
            dtype=np.float32,
        ),
    )

    # Normalised over languages, then H = -sum q ln q:
    #   n0: (1, 0, 0)           -> 0
    #   n1: (0, 1/2, 1/2)       -> ln 2 = 0.693147
    #   n2: (1/3, 1/3, 1/3)     -> ln 3 = 1.098612
    #   n3: never active        -> 0 by convention (0/0 is taken as 0)
    #   n4: (0.6, 0.2, 0.2)     -> -(0.6 ln 0.6 + 0.4 ln 0.2) = 0.306495 + 0.643775 = 0.950271
    #   n5: (1/2, 1/2, 0)       -> ln 2
    expected_entropy = [0.0, math.log(2), math.log(3), 0.0, 0.950270539, math.log(2)]
    np.testing.assert_allclose(lape_entropy(probs)[0], expected_entropy, rtol=1e-6, atol=1e-12)

    # The 18 probabilities sorted: 0 x7, 0.1 x2, 0.2 x2, 0.3 x3, 0.5 x2, 0.6, 0.8 (positions 1..18).
    # filter_rate 0.55: k = round(18 * 0.55) = round(9.9) = 10 -> threshold 0.2 (the 10th smallest).
    #   Eligible (some probability > 0.2): n0, n1, n2, n4. Out: n3 (entropy 0, but never active) and
    #   n5 (max 0.1); without the filter n3 would rank first.
    # top_rate 0.5: round(6 * 0.5) = 3 neurons with the lowest entropy among eligible ones:
    #   n0 (0) < n1 (0.693) < n4 (0.950); n2 (1.099, uniform) is not taken.
    # activation_bar_ratio 0.7: k = round(18 * 0.7) = round(12.6) = 13 -> bar 0.3 (the 13th smallest).
    #   n0: en 0.8 > 0.3 -> en.   n1: zh 0.5, fr 0.5 -> zh and fr.   n4: en 0.6 -> en (0.2 < 0.3).
    settings = LapeSettings(top_rate=0.5, filter_rate=0.55, activation_bar_ratio=0.7)
    assert language_specific_neurons(probs, settings) == [[(0, 0), (0, 4)], [(0, 1)], [(0, 1)]]

    # top_rate 0.67: round(6 * 0.67) = round(4.02) = 4 also takes n2, but its 0.3 is not strictly above
    # the bar of 0.3, so it goes to no language and the result is unchanged.
    wider = LapeSettings(top_rate=0.67, filter_rate=0.55, activation_bar_ratio=0.7)
    assert language_specific_neurons(probs, wider) == [[(0, 0), (0, 4)], [(0, 1)], [(0, 1)]]

    # filter_rate 0.7 (threshold 0.3) would drop n2 as well: its highest probability only equals it.
    # activation_bar_ratio 0.55 (bar 0.2) adds nothing to n4, whose 0.2s only equal the bar.
    strict = LapeSettings(top_rate=0.5, filter_rate=0.7, activation_bar_ratio=0.55)
    assert language_specific_neurons(probs, strict) == [[(0, 0), (0, 4)], [(0, 1)], [(0, 1)]]


def test_neuron_active_in_one_language_only():
    # Two languages, two layers of 50 neurons; every neuron fires in both languages at 20-50% except
    # layer 1 neuron 37, which fires on 90% of language 1's tokens and never for language 0.
    rng = np.random.default_rng(0)
    tokens = np.array([1000, 1000])
    counts = rng.integers(200, 500, size=(2, 2, 50))
    counts[:, 1, 37] = [0, 900]
    probs = activation_probabilities(counts, tokens)

    entropy = lape_entropy(probs)
    assert entropy[1, 37] == 0.0
    assert np.all(np.delete(entropy.ravel(), 50 + 37) > 0)
    # Defaults: round(100 * 0.01) = 1 neuron is taken, and 0.9 is above the 95% quantile (the 190th
    # of 200 probabilities, at most 0.499).
    assert language_specific_neurons(probs) == [[], [(1, 37)]]


def test_uniform_neurons_have_maximal_entropy_and_are_not_taken():
    # Four languages, one layer: neurons 0-99 fire on 90% of the tokens of language i % 4 and 10% of the
    # others; neurons 100-199 fire on 95% of the tokens of every language.
    n_languages = 4
    probs = np.full((n_languages, 1, 200), 0.1, dtype=np.float32)
    for neuron in range(100):
        probs[neuron % n_languages, 0, neuron] = 0.9
    probs[:, 0, 100:] = 0.95

    entropy = lape_entropy(probs)
    np.testing.assert_allclose(entropy[0, 100:], math.log(n_languages), rtol=1e-6)
    assert entropy[0, :100].max() < entropy[0, 100:].min()

    # The filter (the 240th of 800 probabilities, 0.1) keeps every neuron, uniform ones included, so it
    # is the entropy that leaves them out: round(200 * 0.5) = 100 neurons are taken, the specific ones.
    settings = LapeSettings(top_rate=0.5, filter_rate=0.3, activation_bar_ratio=0.3)
    result = language_specific_neurons(probs, settings)
    assert result == [[(0, n) for n in range(100) if n % n_languages == language] for language in range(4)]


def test_every_language_gets_an_entry():
    # Only language 0 gets a neuron; languages 1 and 2 still get (empty) lists.
    probs = np.full((3, 1, 100), 0.1, dtype=np.float32)
    probs[0, 0, 5] = 0.9
    assert language_specific_neurons(probs) == [[(0, 5)], [], []]


def test_equal_entropies_at_the_cut_are_taken_in_index_order():
    # Neurons 3, 7 and 9 have the same entropy, 0; only round(100 * 0.02) = 2 are taken.
    probs = np.full((2, 1, 100), 0.1, dtype=np.float32)
    for neuron in (9, 3, 7):
        probs[:, 0, neuron] = [0.0, 0.9]
    assert language_specific_neurons(probs, LapeSettings(top_rate=0.02)) == [[], [(0, 3), (0, 7)]]


def test_no_neuron_when_top_rate_rounds_to_zero():
    probs = np.full((2, 1, 10), 0.1, dtype=np.float32)
    probs[1, 0, 4] = 0.9
    # round(10 * 0.01) = 0
    assert language_specific_neurons(probs) == [[], []]


def test_mismatched_shapes_are_rejected_with_the_shapes():
    with pytest.raises(ValueError, match=r"\(3, 2, 4\).*\(2,\)"):
        activation_probabilities(np.zeros((3, 2, 4)), np.array([5, 5]))
    with pytest.raises(ValueError, match=r"\(3, 8\).*\(3,\)"):
        activation_probabilities(np.zeros((3, 8)), np.array([5, 5, 5]))
    with pytest.raises(ValueError, match=r"\(3, 2, 4\).*\(3, 1\)"):
        activation_probabilities(np.zeros((3, 2, 4)), np.ones((3, 1)))
    with pytest.raises(ValueError, match=r"\(2, 4\)"):
        language_specific_neurons(np.zeros((2, 4), dtype=np.float32))
    with pytest.raises(ValueError, match=r"\(2, 0, 4\)"):
        lape_entropy(np.zeros((2, 0, 4), dtype=np.float32))


def test_invalid_counts_and_settings_are_rejected():
    with pytest.raises(ValueError, match="positive token count"):
        activation_probabilities(np.zeros((2, 1, 3)), np.array([5, 0]))
    with pytest.raises(ValueError, match="negative"):
        activation_probabilities(-np.ones((2, 1, 3)), np.array([5, 5]))
    with pytest.raises(ValueError, match="more tokens"):
        activation_probabilities(np.full((2, 1, 3), 6), np.array([5, 5]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        language_specific_neurons(np.full((2, 1, 3), np.nan, dtype=np.float32))
    with pytest.raises(ValueError, match="top_rate"):
        LapeSettings(top_rate=1.5)
    with pytest.raises(ValueError, match="filter_rate"):
        # round(6 * 0.05) = 0: there is no 0th smallest probability.
        language_specific_neurons(np.zeros((2, 1, 3), dtype=np.float32), LapeSettings(filter_rate=0.05))

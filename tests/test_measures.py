import numpy as np
import pytest

from transfer_neurons.evaluation.alignment import derangement, mutual_knn_alignment, paired_cosines
from transfer_neurons.evaluation.attention import entropy, jensen_shannon
from transfer_neurons.evaluation.language_space import centroid_similarity_matrix, pca_2d
from transfer_neurons.evaluation.specificity import eta_squared_anova
from transfer_neurons.evaluation.statistics import bootstrap_mean_ci


def test_mutual_knn_is_one_for_identical_spaces_and_low_for_unrelated():
    rng = np.random.default_rng(0)
    space = rng.normal(size=(60, 16))
    assert mutual_knn_alignment(space, space * 3.0, k=5) == 1.0
    unrelated = mutual_knn_alignment(space, rng.normal(size=(60, 16)), k=5)
    assert unrelated < 0.3


def test_paired_cosines_separate_parallel_from_deranged_pairs():
    rng = np.random.default_rng(1)
    pivot = rng.normal(size=(30, 8))
    result = paired_cosines(pivot, pivot + 0.1 * rng.normal(size=pivot.shape))
    assert result["parallel"] > 0.9 > result["non_parallel"]
    assert (derangement(5) != np.arange(5)).all()


def test_centroid_similarity_and_pca():
    rows = dict(
        ((a, b), value)
        for a, b, value in centroid_similarity_matrix({"en": np.array([1.0, 0]), "ja": np.array([0, 2.0])})
    )
    assert rows[("en", "en")] == pytest.approx(1.0)
    assert rows[("en", "ja")] == pytest.approx(0.0)
    assert pca_2d(np.random.default_rng(2).normal(size=(10, 5))).shape == (10, 2)


def test_bootstrap_interval_contains_the_mean():
    mean, low, high = bootstrap_mean_ci(np.array([0.0, 1.0] * 50))
    assert low < mean == 0.5 < high


def test_eta_squared_finds_language_specific_neurons():
    rng = np.random.default_rng(3)
    labels = np.repeat(np.array(["en", "ja", "ko"]), 40)
    specific = (labels == "ja") * 5.0 + rng.normal(size=120)
    shared = rng.normal(size=120)
    eta, p = eta_squared_anova(np.stack([specific, shared], axis=1), labels)
    assert eta[0] > 0.8 and p[0] < 1e-10
    assert eta[1] < 0.1 and p[1] > 0.001


def test_js_divergence_and_entropy():
    uniform = np.full(4, 0.25)
    peaked = np.array([1.0, 0, 0, 0])
    assert jensen_shannon(uniform, uniform) == pytest.approx(0.0)
    assert 0 < jensen_shannon(uniform, peaked) <= np.log(2)
    assert entropy(uniform) == pytest.approx(np.log(4))


def test_groups_of_languages_from_the_config_or_by_family():
    from transfer_neurons.evaluation.specificity import language_groups

    assert language_groups(["en", "ja", "ko", "it"], None) == {
        "en": "Indo-European", "ja": "Japonic", "ko": "Koreanic", "it": "Indo-European"
    }  # fmt: skip
    paper = {"ja+ko": ["ja", "ko"], "Indo-European": ["en", "it"]}
    assert language_groups(["en", "ja", "ko", "it"], paper)["ko"] == "ja+ko"
    with pytest.raises(ValueError, match="evaluation.specificity.groups: no group for it"):
        language_groups(["en", "ja", "it"], {"a": ["en", "ja"]})


def test_binary_eta_squared_of_a_neuron_that_only_one_language_uses():
    # 3 sentences of the language at 2.0, 5 of others at 0.0: all variance is between the two groups.
    activations = np.array([2.0, 2.0, 2.0, 0, 0, 0, 0, 0])[:, None]
    eta, p_value = eta_squared_anova(activations, np.array([True] * 3 + [False] * 5))
    assert eta[0] == pytest.approx(1.0) and p_value[0] == 0.0
    constant = eta_squared_anova(np.ones((8, 1)), np.array([True] * 3 + [False] * 5))
    assert constant[0][0] == 0.0 and constant[1][0] == 1.0

"""Language specificity counted as the authors' htest.py and corr_analysis.py count it.

htest.py: a neuron counts when ``p < 0.05`` and ``eta^2 >= th`` for th in (0.1, 0.25), over the list's
first 1000; corr_analysis.py: the mean eta^2 of ``neurons[:top_n]``, top_n in (10, 100, 1000).
"""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from scipy import stats

from transfer_neurons.data.storage import ScaledArrayWriter
from transfer_neurons.evaluation.specificity import english_source, eta_squared_anova, run_specificity
from transfer_neurons.reporting.analyses.specificity import (
    SPECIFIC_SHARE,
    count_column,
    share_column,
    specificity_summary,
    top_mean_column,
)


def per_neuron(eta, p, rank, neuron_type="type2"):
    n = len(eta)
    return pl.DataFrame({"model": "m", "language": "ja", "group": "ja+ko", "grouping": "language",
                         "neuron_type": neuron_type, "layer": 0, "neuron": np.arange(n), "rank": rank,
                         "eta_squared": eta, "p_value": p})  # fmt: skip


def test_counts_use_greater_or_equal_and_p_for_both_thresholds():
    table = per_neuron(eta=[0.1, 0.0999, 0.25, 0.25, 0.3], p=[0.01, 0.01, 0.2, 0.01, 0.049], rank=[1, 2, 3, 4, 5])
    row = specificity_summary(table).row(0, named=True)
    assert row[count_column(0.1)] == 3  # 0.1 counts (>=); 0.25 with p = 0.2 does not
    assert row[count_column(0.25)] == 2  # p filters the 0.25 threshold too
    assert row[share_column(0.25)] == pytest.approx(2 / 5)
    assert row[SPECIFIC_SHARE] == pytest.approx(3 / 5)
    assert SPECIFIC_SHARE == "share_eta_0.1_p_0.05"


def test_top_k_means_follow_the_rank_and_take_all_of_a_shorter_list():
    rank = np.array([12, 3, 1, 7, 2, 11, 4, 5, 6, 8, 9, 10])  # table order is not rank order
    eta = rank / 100.0
    row = specificity_summary(per_neuron(eta=eta, p=np.full(12, 0.01), rank=rank)).row(0, named=True)
    assert row[top_mean_column(10)] == pytest.approx(np.arange(1, 11).mean() / 100)
    assert row[top_mean_column(100)] == row[top_mean_column(1000)] == pytest.approx(eta.mean())
    assert row["neurons"] == 12


def test_eta_squared_and_p_are_a_one_way_anova_on_two_groups():
    rng = np.random.default_rng(0)
    activations = rng.normal(size=(60, 4)) + np.repeat([[0.0], [0.8]], 30, axis=0) * np.array([0, 1, 2, 0.2])
    labels = np.repeat([True, False], 30)
    eta, p = eta_squared_anova(activations, labels)
    for neuron in range(4):
        values = activations[:, neuron]
        grand = values.mean()
        between = sum(len(values[labels == g]) * (values[labels == g].mean() - grand) ** 2 for g in (True, False))
        within = sum(((values[labels == g] - values[labels == g].mean()) ** 2).sum() for g in (True, False))
        assert eta[neuron] == pytest.approx(between / (between + within))
        assert p[neuron] == pytest.approx(stats.f_oneway(values[labels], values[~labels]).pvalue)


def write_dump(directory, activations: np.ndarray) -> None:
    """A dump with only neuron activations [L, N, d_mlp] (what the specificity reads)."""
    writer = ScaledArrayWriter(directory, "neuron_activations", *activations.shape)
    writer.write(list(range(activations.shape[1])), activations.astype(np.float32))
    writer.close()
    meta = {"n_sentences": activations.shape[1], "facts": {"n_layers": activations.shape[0]}}
    (directory / "meta.json").write_text(json.dumps(meta))


@pytest.fixture
def specificity_inputs(tmp_path):
    rng = np.random.default_rng(1)
    tests, tops = {}, {}
    for index, lang in enumerate(("ja", "nl")):
        for side, shift in (("pivot", 10.0 * (index + 1)), ("target", float(index))):
            directory = tmp_path / lang / side
            directory.mkdir(parents=True)
            write_dump(directory, rng.normal(size=(2, 8, 6)) + shift)
        tests[lang] = tmp_path / lang
        tops[lang] = tmp_path / f"{lang}.parquet"
        pl.DataFrame({"top_n_label": "3", "neuron_type": "type1", "layer": [1, 0, 1], "neuron": [4, 2, 0],
                      "rank": [1, 2, 3]}).write_parquet(tops[lang])  # fmt: skip
    return tests, tops


def test_english_comes_from_the_chosen_languages_pairs(specificity_inputs):
    tests, tops = specificity_inputs
    assert english_source(tests, None) == tests["ja"]
    assert english_source(tests, "nl") == tests["nl"]
    with pytest.raises(ValueError, match="evaluation.specificity.english_pairs"):
        english_source(tests, "ko")
    from_nl = run_specificity(tests, tops, pivot="en", main_label="3", groups=None, labels={"model": "m"},
                              english_pairs="nl")  # fmt: skip
    from_ja = run_specificity(tests, tops, pivot="en", main_label="3", groups=None, labels={"model": "m"})
    assert from_nl["eta_squared"].to_list() != from_ja["eta_squared"].to_list()  # English shifted by 10 vs 20
    ranks = from_nl.filter(pl.col("grouping") == "language").sort("language", "rank")
    assert ranks["rank"].to_list() == [1, 2, 3, 1, 2, 3]
    assert ranks.filter(pl.col("rank") == 1)["neuron"].to_list() == [4, 4]

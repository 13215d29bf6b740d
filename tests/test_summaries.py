import polars as pl
import pytest

from transfer_neurons.reporting.summaries import qa_summary, specificity_summary, with_group


def answers_table():
    rows = []
    for example in range(40):
        for condition, kind, neuron_type, seed, f1 in [
            ("normal", "normal", None, None, 1.0),
            ("type1", "transfer", "type1", None, 0.0),
            ("random_type1_s0", "random", "type1", 0, 1.0),
            ("random_type1_s1", "random", "type1", 1, 0.5),
        ]:
            rows.append({"model": "m", "language": "ja", "condition": condition, "kind": kind,
                         "neuron_type": neuron_type, "top_n_label": None if kind == "normal" else "10",
                         "seed": seed, "example_id": f"q{example}", "f1": f1})  # fmt: skip
    return pl.DataFrame(rows)


def test_groups_drop_seeds():
    grouped = with_group(answers_table())
    assert set(grouped["group"]) == {"normal", "type1", "random_type1"}


def test_qa_summary_averages_seeds_and_pairs_the_difference():
    summary = qa_summary(answers_table(), main_label="10", resamples=200)
    rows = {row["group"]: row for row in summary.iter_rows(named=True)}
    assert rows["normal"]["f1"] == 1.0
    assert rows["random_type1"]["f1"] == pytest.approx(0.75)
    assert rows["random_type1"]["seed_min"] == 0.5 and rows["random_type1"]["seed_max"] == 1.0
    assert rows["type1"]["diff_vs_random"] == pytest.approx(-0.75)
    assert rows["type1"]["diff_ci_low"] == pytest.approx(-0.75)  # no variance over questions


def test_specificity_shares():
    table = pl.DataFrame({"model": "m", "language": "ja", "neuron_type": ["type1", "type1", "type2", "type2"],
                          "eta_squared": [0.05, 0.2, 0.3, 0.5], "p_value": [0.5, 0.01, 0.01, 0.01]})  # fmt: skip
    summary = specificity_summary(table)
    shares = dict(zip(summary["neuron_type"], summary["share_eta_0.1_p_0.05"], strict=True))
    assert shares == {"type1": 0.5, "type2": 1.0}

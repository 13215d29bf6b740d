import polars as pl
import pytest

from transfer_neurons.reporting.summaries import qa_contrasts, qa_summary, specificity_summary, with_group


def answers_table():
    rows = []
    for example in range(40):
        for condition, kind, neuron_type, seed, f1 in [
            ("normal", "normal", None, None, 1.0),
            ("type1", "transfer", "type1", None, 0.0),
            ("random_type1_s0", "random", "type1", 0, 1.0),
            ("random_type1_s1", "random", "type1", 1, 0.5),
        ]:
            rows.append({"model": "m", "language": "ja", "positions": "prompt", "condition": condition,
                         "kind": kind, "neuron_type": neuron_type, "top_n_label": None if kind == "normal" else "10",
                         "seed": seed, "example_id": f"q{example}", "f1": f1, "em": float(f1 == 1.0)})  # fmt: skip
    return pl.DataFrame(rows)


def test_groups_drop_seeds():
    grouped = with_group(answers_table())
    assert set(grouped["group"]) == {"normal", "type1", "random_type1"}


def test_qa_summary_averages_seeds_per_question():
    summary = qa_summary(answers_table(), main_label="10", resamples=200)
    rows = {row["group"]: row for row in summary.iter_rows(named=True)}
    assert rows["normal"]["mkqa_f1"] == 1.0 and rows["normal"]["mkqa_em"] == 1.0
    assert rows["random_type1"]["mkqa_f1"] == pytest.approx(0.75)
    assert rows["random_type1"]["mkqa_em"] == pytest.approx(0.5)  # exact in seed 0 only
    assert rows["random_type1"]["seed_min"] == 0.5 and rows["random_type1"]["seed_max"] == 1.0


def test_qa_contrasts_pair_transfer_and_baseline_by_question():
    (row,) = qa_contrasts(answers_table(), main_label="10", resamples=200).iter_rows(named=True)
    assert (row["neuron_type"], row["baseline"], row["positions"]) == ("type1", "random", "prompt")
    assert row["difference"] == pytest.approx(-0.75)
    assert row["ci_low"] == pytest.approx(-0.75) == row["ci_high"]  # no variance over questions


def test_specificity_shares():
    table = pl.DataFrame({"model": "m", "language": "ja", "group": "ja+ko", "grouping": "language",
                          "neuron_type": ["type1", "type1", "type2", "type2"],
                          "eta_squared": [0.05, 0.2, 0.3, 0.5], "p_value": [0.5, 0.01, 0.01, 0.01]})  # fmt: skip
    summary = specificity_summary(table)
    shares = dict(zip(summary["neuron_type"], summary["share_eta_0.1_p_0.05"], strict=True))
    assert shares == {"type1": 0.5, "type2": 1.0}


def test_data_summary_counts_every_step_per_language_and_split():
    from transfer_neurons.reporting.summaries import data_summary

    reasons = ["repeated en sentence", "repeated ja sentence", "repeated en sentence"]
    dropped = pl.DataFrame({"language": ["ja", "ja", "ja"], "id": ["2", "4", "5"], "reason": reasons})
    pairs = pl.DataFrame({"language": "ja", "split": ["train"] * 4 + ["test"] * 2,
                          "kept": [True, True, False, True, True, True]})  # fmt: skip
    rows = {(split, step): n for _, split, step, n in data_summary(dropped, pairs).iter_rows()}
    assert rows == {
        ("all", "dropped: repeated en sentence"): 2,
        ("all", "dropped: repeated ja sentence"): 1,
        ("train", "in split"): 4,
        ("train", "dropped: over runtime.max_tokens"): 1,
        ("train", "used for detection"): 3,
        ("test", "in split"): 2,
        ("test", "dropped: over runtime.max_tokens"): 0,
        ("test", "used for detection"): 2,
    }

import numpy as np
import polars as pl
import pytest

from transfer_neurons.reporting.analyses.qa import qa_contrasts, qa_summary
from transfer_neurons.reporting.analyses.specificity import specificity_summary
from transfer_neurons.reporting.summaries import with_group


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
    from transfer_neurons.reporting.analyses.data import data_summary

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


# --- the paper's QA aggregation: the questions the unmodified model answers well -------------------
# Per question: normal F1, Type-1 F1, and the random baseline's F1 under seeds 0 and 1. q4 is answered
# well only under the baseline (and Type-1): it must stay out of the paper's subsets.
PAPER_QUESTIONS = {
    "q0": (1.0, 0.0, 1.0, 0.5),
    "q1": (0.9, 0.5, 1.0, 1.0),
    "q2": (0.6, 0.6, 0.6, 0.6),
    "q3": (0.4, 0.4, 0.4, 0.4),
    "q4": (0.0, 1.0, 1.0, 1.0),
    "q5": (0.8, 0.0, 0.8, 0.8),
}


def paper_answers_table():
    rows = []
    for example, scores in PAPER_QUESTIONS.items():
        for (condition, kind, neuron_type, seed), f1 in zip(
            [("normal", "normal", None, None), ("type1", "transfer", "type1", None),
             ("random_type1_s0", "random", "type1", 0), ("random_type1_s1", "random", "type1", 1)],
            scores, strict=True,
        ):  # fmt: skip
            rows.append({"model": "m", "language": "ja", "positions": "prompt", "condition": condition, "kind": kind,
                         "neuron_type": neuron_type, "top_n_label": None if kind == "normal" else "10",
                         "seed": seed, "example_id": example, "f1": f1, "em": float(f1 == 1.0)})  # fmt: skip
    return pl.DataFrame(rows)


def percentile_interval(values, resamples):
    """The percentile bootstrap 95 % interval of the mean, drawn as the summaries draw it (seed 0)."""
    values = np.asarray(values, dtype=np.float64)
    draws = np.random.default_rng(0).integers(0, len(values), size=(resamples, len(values)))
    return tuple(np.percentile(values[draws].mean(axis=1), [2.5, 97.5]))


def test_qa_threshold_summary_scores_every_group_on_the_normal_conditions_subset():
    from transfer_neurons.reporting.analyses.qa import PAPER_THRESHOLDS, qa_threshold_summary

    assert PAPER_THRESHOLDS == (0.8, 0.5)
    summary = qa_threshold_summary(paper_answers_table(), main_label="10", resamples=500)
    rows = {(row["subset"], row["group"]): row for row in summary.iter_rows(named=True)}
    assert {subset for subset, _ in rows} == {"all", "f1>=0.5", "f1>=0.8"}
    # F1 >= 0.8 without intervention: q0, q1, q5 (not q4, which only the baseline answers)
    expected = {"normal": [1.0, 0.9, 0.8], "type1": [0.0, 0.5, 0.0], "random_type1": [0.75, 1.0, 0.8]}
    for group, values in expected.items():
        row = rows[("f1>=0.8", group)]
        assert row["n_questions"] == 3 and row["threshold"] == 0.8
        assert row["mkqa_f1"] == pytest.approx(np.mean(values))
        assert (row["ci_low"], row["ci_high"]) == pytest.approx(percentile_interval(values, 500))
    assert rows[("f1>=0.8", "random_type1")]["n_seeds"] == 2
    # F1 >= 0.5: q0, q1, q2, q5; every question: all six, as qa_summary has them
    assert rows[("f1>=0.5", "type1")]["n_questions"] == 4
    assert rows[("f1>=0.5", "type1")]["mkqa_f1"] == pytest.approx((0.0 + 0.5 + 0.6 + 0.0) / 4)
    overall = {row["group"]: row for row in qa_summary(paper_answers_table(), "10", 500).iter_rows(named=True)}
    for group in ("normal", "type1", "random_type1"):
        assert rows[("all", group)]["n_questions"] == 6 and rows[("all", group)]["threshold"] == 0.0
        assert rows[("all", group)]["mkqa_f1"] == pytest.approx(overall[group]["mkqa_f1"])
        assert rows[("all", group)]["ci_low"] == pytest.approx(overall[group]["ci_low"])


def test_qa_threshold_contrasts_pair_the_subsets_questions():
    from transfer_neurons.reporting.analyses.qa import qa_threshold_contrasts

    contrasts = qa_threshold_contrasts(paper_answers_table(), main_label="10", resamples=500)
    row = contrasts.filter(pl.col("subset") == "f1>=0.8").row(0, named=True)
    assert (row["neuron_type"], row["baseline"], row["n"], row["n_seeds"]) == ("type1", "random", 3, 2)
    assert row["difference"] == pytest.approx(((0.0 - 0.75) + (0.5 - 1.0) + (0.0 - 0.8)) / 3)


def test_qa_scatter_places_each_question_by_its_normal_and_deactivated_f1():
    from transfer_neurons.reporting.analyses.qa import qa_scatter_chart, qa_scatter_points
    from transfer_neurons.reporting.registry import FigureContext, FigureSettings

    context = FigureContext("m", FigureSettings(main_label="10", knn_metric="mutual_knn_k5", resamples=100))
    points = qa_scatter_points({"qa": paper_answers_table()}, context)
    assert set(points["group"]) == {"type1", "random_type1"}  # the strictest baseline present: random
    q4 = points.filter((pl.col("group") == "type1") & (pl.col("normal_f1") == 0.0))
    assert q4.select("f1", "questions").row(0) == (1.0, 1)
    assert points["questions"].sum() == 2 * len(PAPER_QUESTIONS)
    spec = qa_scatter_chart(points, "title").to_dict()
    assert spec["facet"]["column"]["field"] == "language"


def test_answer_language_shares_pool_seeds_and_contrast_by_question():
    from transfer_neurons.reporting.analyses.answer_language import (
        answer_language_summary,
        in_question_language_contrasts,
    )

    rows = []
    for example in range(20):
        for condition, kind, neuron_type, seed, answer_class in [
            ("normal", "normal", None, None, "question_language"),
            ("type2", "transfer", "type2", None, "english" if example < 10 else "question_language"),
            ("random_type2_s0", "random", "type2", 0, "question_language"),
            ("random_type2_s1", "random", "type2", 1, "unidentified" if example < 4 else "question_language"),
        ]:
            rows.append({"model": "m", "language": "ja", "positions": "prompt", "condition": condition, "kind": kind,
                         "neuron_type": neuron_type, "top_n_label": None if kind == "normal" else "10", "seed": seed,
                         "example_id": f"q{example:02d}", "answer_language_class": answer_class})  # fmt: skip
    answers = pl.DataFrame(rows)
    summary = answer_language_summary(answers, "10", 200)
    share = {(row["group"], row["answer_language_class"]): row["share"] for row in summary.iter_rows(named=True)}
    assert share["type2", "english"] == 0.5 and share["type2", "question_language"] == 0.5
    assert share["random_type2", "unidentified"] == pytest.approx(0.1)  # 0.0 and 0.2: the seeds' mean
    assert summary.group_by("group").agg(pl.col("share").sum())["share"].to_list() == pytest.approx([1.0] * 3)
    contrasts = in_question_language_contrasts(answers, "10", 200)
    row = contrasts.filter(pl.col("baseline") == "random").row(0, named=True)
    assert row["difference"] == pytest.approx(0.5 - 0.9) and row["ci_high"] < 0 and row["n"] == 20

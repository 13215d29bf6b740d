"""Verdicts on synthetic tables whose truth is known: each claim's chain from per-unit data to its verdict."""

import math

import numpy as np
import polars as pl
import pytest

from transfer_neurons.reporting.analyses.alignment import alignment_contrasts
from transfer_neurons.reporting.analyses.patching import patching_recovery
from transfer_neurons.reporting.analyses.specificity import share_difference
from transfer_neurons.reporting.claims import (
    CONTRADICTED,
    INCONCLUSIVE,
    MDE_FACTOR,
    MIN_UNITS,
    SUPPORTED,
    Case,
    ClaimSettings,
    case_verdict,
    claim_verdict,
    claims_table,
    holm_adjusted,
    judge,
    minimum_detectable_effect,
    p_values,
)
from transfer_neurons.reporting.registry import CLAIMS, FigureContext, FigureSettings
from transfer_neurons.reporting.report import comparison_section

CONTEXT = FigureContext("m", FigureSettings(main_label="10", knn_metric="mutual_knn_k5", resamples=1000), {})
LOWER = ClaimSettings("x", -1, 0.1, "questions", "c", "w", "o", paper_effect=-0.3)


def claim_row(tables, name):
    (row,) = claims_table(tables, CONTEXT).filter(pl.col("claim") == name).iter_rows(named=True)
    return row


# --- alignment: per-pair states of Type-1 and its magnitude-matched control, with a known difference ---
def state_pairs(difference: float, noise: float, n_pairs: int, seed: int = 0) -> pl.DataFrame:
    """Per-pair layer-mean mutual k-NN share under normal, Type-1 and two magnitude-matched seeds; Type-1
    minus the control is ``difference`` plus noise of sd ``noise``."""
    rng = np.random.default_rng(seed)
    control = rng.uniform(0.3, 0.6, n_pairs)
    conditions = {
        ("normal", "normal", None, None): control + 0.05,
        ("type1", "transfer", "type1", None): control + difference + rng.normal(0, noise, n_pairs),
        ("magnitude_matched_type1_s0", "magnitude_matched", "type1", 0): control,
        ("magnitude_matched_type1_s1", "magnitude_matched", "type1", 1): control,
    }
    frames = [
        pl.DataFrame({"model": "m", "language": "ja", "condition": name, "kind": kind, "neuron_type": neuron_type,
                      "top_n_label": None if kind == "normal" else "10", "seed": seed_, "pair": np.arange(n_pairs),
                      "knn_share": values, "parallel_cosine": values},
                     schema_overrides={"neuron_type": pl.String, "top_n_label": pl.String, "seed": pl.Int32})
        for (name, kind, neuron_type, seed_), values in conditions.items()
    ]  # fmt: skip
    return pl.concat(frames)


def alignment_tables(difference, noise, n_pairs):
    contrasts = alignment_contrasts(state_pairs(difference, noise, n_pairs), "10", 1000)
    return {"baseline_contrasts": contrasts.with_columns(pl.lit(2).alias("n_seeds"))}


def test_a_clear_effect_is_supported():
    row = claim_row(alignment_tables(difference=-0.1, noise=0.02, n_pairs=100), "alignment")
    assert row["verdict"] == SUPPORTED and row["holm_verdict"] == SUPPORTED
    assert row["control"] == "magnitude-matched sets"
    assert "n = 100 pairs, 2 seeds" in row["numbers"] and row["n"] == "100 pairs"
    assert row["too_small"] is False


def test_a_clear_null_with_a_tight_interval_is_contradicted_by_the_smallest_effect_of_interest():
    row = claim_row(alignment_tables(difference=0.0, noise=0.004, n_pairs=200), "alignment")
    assert row["verdict"] == CONTRADICTED
    assert "excludes every effect as large as 0.02" in row["numbers"]
    assert row["mde"] < CLAIMS["alignment"].settings.smallest_effect


def test_a_wide_interval_is_inconclusive_and_the_run_too_small():
    row = claim_row(alignment_tables(difference=-0.02, noise=0.3, n_pairs=10), "alignment")
    assert row["verdict"] == INCONCLUSIVE
    assert row["too_small"] is True and row["units_needed"] > 10
    assert row["mde"] > CLAIMS["alignment"].settings.smallest_effect


def test_a_claim_whose_table_is_missing_is_not_measured():
    assert claim_row({}, "alignment")["verdict"] == "not measured"


# --- interchange: per-pair patching with known recoveries ------------------------------------------
def patching_pairs(gap: float, english: float, mean: float, noise: float, n_pairs: int = 60) -> pl.DataFrame:
    """The per-pair patching table of the transfer set, every layer patched: clean - corrupted is ``gap``
    plus noise, and the English and mean-value patches give back ``english`` and ``mean`` of it."""
    rng = np.random.default_rng(1)
    corrupted = rng.uniform(0.2, 0.4, n_pairs)
    clean = corrupted + gap + rng.normal(0, noise, n_pairs)
    lift = clean - corrupted
    values = {"clean": clean, "english": corrupted + english * lift + rng.normal(0, noise / 5, n_pairs),
              "mean": corrupted + mean * lift + rng.normal(0, noise / 5, n_pairs)}  # fmt: skip
    return pl.concat(
        pl.DataFrame({"model": "m", "language": "ja", "neuron_set": "transfer", "source": source,
                      "scope": "cumulative", "patched_layer": 3, "pair": np.arange(n_pairs), "metric": "mutual_knn",
                      "value": value, "clean": clean, "corrupted": corrupted})
        for source, value in values.items()
    )  # fmt: skip


def interchange_row(pairs):
    return claim_row({"patching_recovery": patching_recovery(pairs, 1000)}, "interchange")


def test_interchange_is_judged_against_the_mean_value_patch():
    # English values restore everything, but so do the neurons' training means: against a recovery of 0.5
    # this would be supported; against its deciding control it is not.
    pairs = patching_pairs(gap=0.1, english=1.0, mean=0.98, noise=0.01)
    recovery = patching_recovery(pairs, 1000)
    english = recovery.filter(pl.col("source") == "english").row(0, named=True)
    assert english["recovery"] == pytest.approx(1.0, abs=0.02) and english["recovery_ci_low"] > 0.5
    row = interchange_row(pairs)
    assert "mean values" in row["control"]
    assert row["verdict"] == CONTRADICTED
    assert english["beyond_mean"] == pytest.approx(0.02, abs=0.01)


def test_interchange_beyond_the_mean_values_is_supported():
    row = interchange_row(patching_pairs(gap=0.1, english=1.0, mean=0.3, noise=0.01))
    assert row["verdict"] == SUPPORTED


def test_a_ratio_whose_denominator_interval_includes_0_is_inconclusive_by_construction():
    pairs = patching_pairs(gap=0.0, english=1.0, mean=0.0, noise=0.05)
    recovery = patching_recovery(pairs, 1000)
    english = recovery.filter(pl.col("source") == "english").row(0, named=True)
    assert english["gap_ci_low"] < 0 < english["gap_ci_high"]
    assert english["recovery_ci_low"] is None and english["beyond_mean_ci_low"] is None
    row = interchange_row(pairs)
    assert row["verdict"] == INCONCLUSIVE and "removed nothing measurable" in row["numbers"]


def test_the_recovery_interval_resamples_numerator_and_denominator_together():
    # Every pair recovers exactly 0.8 of its own gap, whatever the gap: resampled together, the ratio
    # cannot move; resampled apart, it would.
    pairs = patching_pairs(gap=0.1, english=0.8, mean=0.0, noise=0.05).with_columns(
        pl.when(pl.col("source") == "english")
        .then(pl.col("corrupted") + 0.8 * (pl.col("clean") - pl.col("corrupted")))
        .otherwise(pl.col("value"))
        .alias("value")
    )
    english = patching_recovery(pairs, 1000).filter(pl.col("source") == "english").row(0, named=True)
    assert english["recovery_ci_low"] == pytest.approx(0.8) and english["recovery_ci_high"] == pytest.approx(0.8)


# --- one case's rules ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("case", "verdict"),
    [
        (Case("effect", -0.3, -0.4, -0.2, 50), SUPPORTED),
        (Case("other side", 0.2, 0.1, 0.3, 50), CONTRADICTED),
        (Case("tight null", 0.001, -0.03, 0.03, 200), CONTRADICTED),
        (Case("wide", -0.05, -0.3, 0.2, 12), INCONCLUSIVE),
        # no unit went the predicted way, but an interval pinned at 0 by ties cannot rule the effect out
        (Case("pinned", 0.333, 0.0, 0.667, 6), INCONCLUSIVE),
        (Case("ties", 0.0, 0.0, 0.0, 12), INCONCLUSIVE),
        (Case("few", -1.0, -1.0, -1.0, MIN_UNITS - 1), INCONCLUSIVE),
        (Case("no interval", None, None, None, 0, undecidable="no question"), INCONCLUSIVE),
    ],
)
def test_case_verdicts(case, verdict):
    assert case_verdict(case, LOWER)[0] == verdict


def test_claim_verdicts_count_their_cases():
    assert claim_verdict([SUPPORTED] * 3) == SUPPORTED
    assert claim_verdict([SUPPORTED, SUPPORTED, CONTRADICTED]) == CONTRADICTED
    assert claim_verdict([SUPPORTED, INCONCLUSIVE, INCONCLUSIVE]) == "partly supported (1 of 3)"
    assert claim_verdict([INCONCLUSIVE] * 2) == INCONCLUSIVE
    assert claim_verdict([]) == "not measured"


def test_p_values_reach_0_05_exactly_where_the_interval_touches_the_tested_value():
    p_zero, p_small = p_values(Case("c", -0.2, -0.3, 0.0, 20), LOWER)
    assert p_zero == pytest.approx(0.05)
    p_zero, p_small = p_values(Case("c", 0.0, -0.1, 0.1, 20), LOWER)
    assert p_zero == 1.0 and p_small == pytest.approx(0.05)


def test_minimum_detectable_effect_is_2_8_standard_errors_read_off_the_interval():
    width_of_one_standard_error = 2 * 1.959964
    case = Case("c", 0.0, -width_of_one_standard_error / 2, width_of_one_standard_error / 2, 50)
    assert minimum_detectable_effect(case) == pytest.approx(MDE_FACTOR) == pytest.approx(2.80, abs=0.005)


def test_holm_adjustment_by_hand():
    # sorted: 0.005 x 4 = 0.02; 0.01 x 3 = 0.03; 0.03 x 2 = 0.06; 0.04 x 1 = 0.04 -> kept at 0.06
    assert holm_adjusted([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm_adjusted([0.5]) == [0.5]


def test_holm_keeps_the_strong_cases_and_leaves_the_marginal_ones_inconclusive():
    # Each marginal case alone: p = 2 (1 - Phi(0.1 / (0.095 / 1.96))) = 0.039 < 0.05; three together are not.
    marginal = Case("marginal", -0.1, -0.195, -0.005, 40)
    strong = Case("strong", -0.3, -0.35, -0.25, 40)
    judged = judge([marginal, marginal, marginal, strong], LOWER)
    assert [judgement.verdict for judgement in judged] == [SUPPORTED] * 4
    assert [judgement.holm for judgement in judged] == [INCONCLUSIVE] * 3 + [SUPPORTED]
    p_marginal = math.erfc((0.1 / (0.095 / 1.959964)) / math.sqrt(2))
    assert judged[0].p_zero == pytest.approx(p_marginal)
    assert claim_verdict([judgement.holm for judgement in judged]) == "partly supported (1 of 4)"


def test_no_case_is_contradicted_where_its_interval_includes_the_papers_effect():
    rng = np.random.default_rng(0)
    for name, settings in ((claim.name, claim.settings) for claim in CLAIMS.values()):
        if settings.paper_effect is None:
            continue
        assert settings.smallest_effect <= abs(settings.paper_effect), name
        for _ in range(500):
            low, high = np.sort(rng.uniform(-1, 1, 2))
            if low <= settings.paper_effect <= high:
                case = Case("c", float((low + high) / 2), float(low), float(high), 50)
                assert case_verdict(case, settings)[0] != CONTRADICTED


def test_every_registered_claim_has_settings_that_can_judge_it():
    for claim in CLAIMS.values():
        assert claim.settings.side in (-1, 1) and claim.settings.smallest_effect > 0, claim.name


# --- claims that are not paired contrasts ------------------------------------------------------------
def test_share_difference_matches_newcombes_worked_example():
    # Newcombe (1998), Statistics in Medicine 17:873, example (a): 56/70 - 48/80, method 10: 0.0524 to 0.3339
    difference, low, high = share_difference(48 / 80, 80, 56 / 70, 70)
    assert difference == pytest.approx(0.2)
    assert (low, high) == pytest.approx((0.0524, 0.3339), abs=1e-4)


def test_placement_tests_type2s_place_within_its_candidate_layers():
    from transfer_neurons.reporting.analyses.detection import placement_summary

    layers = {"type1": [0, 1, 2, 3, 4, 5] * 10, "type2": [9, 9, 8, 9, 9, 7] * 10}  # candidates 0-5 and 6-9
    neurons = pl.concat(
        pl.DataFrame({"detector": "centroid", "language": "ja", "neuron_type": kind, "top_n_label": "10",
                      "layer": values, "neuron": list(range(len(values)))})
        for kind, values in layers.items()
    )  # fmt: skip
    scores = pl.DataFrame({"detector": "centroid", "language": "ja", "neuron_type": ["type1"] * 10 + ["type2"] * 10,
                           "layer": list(range(10)) * 2, "candidate": [layer < 6 for layer in range(10)]
                           + [layer >= 6 for layer in range(10)]})  # fmt: skip
    summary = placement_summary(neurons, scores, "10", 1000)
    row = claim_row({"placement_summary": summary}, "placement")
    late = summary.filter(pl.col("neuron_type") == "type2").row(0, named=True)
    assert (late["first_candidate"], late["last_candidate"]) == (6, 9)
    assert late["mean_position"] == pytest.approx((3 + 3 + 2 + 3 + 3 + 1) / 6 / 3)
    assert row["verdict"] == SUPPORTED and "neurons spread evenly" in row["control"]


# --- several models ----------------------------------------------------------------------------------
def test_the_model_comparison_puts_each_models_verdict_in_its_own_column():
    def claims(verdicts):
        return pl.DataFrame({"claim": ["alignment", "qa"], "statement": ["aligns", "answers"], "verdict": verdicts,
                             "holm_verdict": verdicts, "n": ["70 pairs", "12 questions"]})  # fmt: skip

    section_id, _, body = comparison_section(
        {"llama": claims([SUPPORTED, INCONCLUSIVE]), "mistral": claims([CONTRADICTED, SUPPORTED])}
    )
    assert section_id == "claims-by-model"
    header = body[body.index("<thead>") : body.index("</thead>")]
    assert header.index("llama") < header.index("mistral")
    rows = body[body.index("<tbody>") :].split("</tr>")
    assert rows[0].index(SUPPORTED) < rows[0].index(CONTRADICTED) and "aligns" in rows[0]
    assert rows[1].index(INCONCLUSIVE) < rows[1].index(SUPPORTED) and "answers" in rows[1]

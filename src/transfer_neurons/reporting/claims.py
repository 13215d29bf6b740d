"""How a claim is tested and judged: its settings, findings, verdicts and the claims table.

Each claim (``reporting.registry.CLAIMS``, registered by its analysis's module) tests one effect,
one case per language (and QA setting): an estimate with a 95 % interval over its sampling units
(questions, pairs, sentences or neurons), against the control that would give the same result
without the claimed mechanism. Its settings (``Claim.settings``; the claims registry is the one table
of thresholds) give the side the claim predicts and its smallest effect of interest (SESOI). Per case:

* ``supported``: the interval excludes 0 on the predicted side (and reaches the SESOI);
* ``contradicted``: it excludes 0 on the other side, or excludes every effect as large as the SESOI
  (an interval short of the SESOI) where the case could have detected one (its MDE is at most the
  SESOI: a null is evidence only from a case with the power to find the effect; with a few tied units
  a percentile interval can exclude the SESOI merely because no unit moved);
* ``inconclusive``: neither; also by construction where the data cannot decide (fewer than
  ``MIN_UNITS`` units, every unit tied, a ratio whose denominator's interval includes 0).

Per claim: ``supported`` (every case), ``contradicted`` (any case), ``partly supported (k of n)``
(some supported, none contradicted), else ``inconclusive``; ``not measured`` without its table.

Beside it, a Holm-adjusted verdict over the claim's m decidable cases (the comparisons): each case's
p-value for "no effect" (and, for contradictions, for "an effect as large as the SESOI") comes from
a normal approximation whose standard error is read off the side of its bootstrap interval that
faces the tested value, so that unadjusted p < 0.05 exactly when the interval decides; a case keeps
its verdict after Holm when its Holm-adjusted p stays below 0.05, else it is inconclusive.

The minimum detectable effect (MDE) of a case at its n is (z_0.975 + z_0.80) x SE = 2.80 x SE, with
SE = (interval width) / (2 x 1.96): the difference a two-sided test at alpha 0.05 finds with 80 %
power. A claim with an inconclusive case whose MDE exceeds the SESOI (or whose units are fewer than
``MIN_UNITS``) is one this run was too small to test.
Nothing here is written by hand: change a number in a table and the verdict follows.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from statistics import NormalDist
from typing import TYPE_CHECKING, Any

from transfer_neurons.lazy import lazy_import
from transfer_neurons.names import BASELINE_KINDS
from transfer_neurons.reporting.registry import CLAIMS, Claim, ClaimSettings, FigureContext, Tables
from transfer_neurons.reporting.summaries import main_conditions

if TYPE_CHECKING:
    import polars as pl
else:
    pl = lazy_import("polars")

SUPPORTED, CONTRADICTED, INCONCLUSIVE = "supported", "contradicted", "inconclusive"
PARTLY, NOT_MEASURED = "partly supported", "not measured"
# The strictest control first: it matches what the others match and the write size too.
CONTROL_ORDER = tuple(reversed(BASELINE_KINDS))

ALPHA = 0.05
Z_CI = NormalDist().inv_cdf(1 - ALPHA / 2)  # 1.96: the intervals are two-sided 95 %
Z_POWER = NormalDist().inv_cdf(0.80)  # 0.84: 80 % power
MDE_FACTOR = Z_CI + Z_POWER  # 2.80
# Below 6 units even a unanimous sign is not significant at 0.05 (two-sided sign test: 2 / 2^5 > 0.05),
# and a percentile bootstrap over so few units is too narrow to trust: such a case is inconclusive.
MIN_UNITS = 6
LARGER_RUN = "config/cpu-full.yaml"  # the config that runs the analyses at larger sizes


@dataclass(frozen=True)
class Case:
    """One case of a claim (a language, a QA setting): its estimate with a 95 % interval over ``n`` units.

    ``undecidable`` says why the data cannot decide the case whatever its interval (empty: the interval
    decides); ``detail`` shows what else a reader should see (the other controls, the parts of a ratio).
    """

    label: str
    estimate: float | None
    ci_low: float | None
    ci_high: float | None
    n: int
    detail: str = ""
    undecidable: str = ""
    seeds: int | None = None  # seeds a drawn control is averaged over


@dataclass(frozen=True)
class Finding:
    """What one claim's test found: the control that decided it and one case per language (and setting)."""

    control: str
    cases: tuple[Case, ...]


@dataclass(frozen=True)
class Judgement:
    """One case's verdict, why, its p-values (None where the data cannot decide) and MDE."""

    case: Case
    verdict: str
    reason: str
    p_zero: float | None = None  # two-sided, for "no effect"
    p_small: float | None = None  # for "an effect as large as the SESOI on the predicted side"
    mde: float | None = None
    holm: str = INCONCLUSIVE


# --- one case ----------------------------------------------------------------------------------------
def counted(n: int, unit: str) -> str:
    """``n`` with its unit: "1 question", "12 questions"."""
    return f"{n} {unit[:-1] if n == 1 and unit.endswith('s') else unit}"


def interval(value: float, low: float, high: float) -> str:
    return f"{value:+.3f} [{low:+.3f}, {high:+.3f}]"


def oriented(case: Case, side: int) -> tuple[float, float, float]:
    """(estimate, low, high) turned so that the predicted side is positive."""
    # Only cases ``undecidable_reason`` lets through come here.
    assert case.estimate is not None and case.ci_low is not None and case.ci_high is not None
    ends = sorted((side * case.ci_low, side * case.ci_high))
    return side * case.estimate, ends[0], ends[1]


def undecidable_reason(case: Case, settings: ClaimSettings) -> str:
    """Why the data cannot decide ``case`` whatever its interval says ('' when it can)."""
    if case.undecidable:
        return case.undecidable
    if case.estimate is None or case.ci_low is None or case.ci_high is None:
        return "no interval"
    if case.n < MIN_UNITS:
        return f"{counted(case.n, settings.unit)}, fewer than {MIN_UNITS}"
    if case.ci_low == case.ci_high == case.estimate == 0:
        return f"all {counted(case.n, settings.unit)} tied (the same value under both): no spread to judge"
    return ""


def case_verdict(case: Case, settings: ClaimSettings) -> tuple[str, str]:
    """(verdict, reason) of one case from its interval, the predicted side, the SESOI and the MDE."""
    reason = undecidable_reason(case, settings)
    if reason:
        return INCONCLUSIVE, reason
    _, low, high = oriented(case, settings.side)
    sesoi = settings.smallest_effect
    if high < 0:
        return CONTRADICTED, "the interval excludes 0 on the other side"
    if high < sesoi:
        mde = minimum_detectable_effect(case)  # not None: the case has an interval
        if mde is not None and mde <= sesoi:
            small = "an effect on the predicted side, but " if low > 0 else ""
            return CONTRADICTED, f"{small}the interval excludes every effect as large as {sesoi:g}"
        return INCONCLUSIVE, f"the interval excludes effects of {sesoi:g}, but the MDE exceeds {sesoi:g}"
    if low > 0:
        return SUPPORTED, "the interval excludes 0 on the predicted side"
    return INCONCLUSIVE, f"the interval includes 0 and effects as large as {sesoi:g}"


def two_sided_p(estimate: float, bound: float, tested: float) -> float:
    """Two-sided p of ``estimate`` against ``tested`` in a normal approximation whose standard error is
    the distance from the estimate to ``bound`` (the interval's end on the tested side) over z_0.975."""
    distance = abs(estimate - tested)
    if distance == 0:
        return 1.0
    standard_error = abs(estimate - bound) / Z_CI
    if standard_error == 0:
        return 0.0
    return math.erfc(distance / standard_error / math.sqrt(2))


def p_values(case: Case, settings: ClaimSettings) -> tuple[float, float]:
    """(p for "no effect", p for "an effect as large as the SESOI on the predicted side") of a decidable case.

    Each is below 0.05 exactly when the interval excludes that value, so Holm's adjustment of them
    is the interval's verdict at the adjusted level."""
    estimate, low, high = oriented(case, settings.side)
    p_zero = two_sided_p(estimate, low if estimate > 0 else high, 0.0)
    p_small = 1.0 if estimate >= settings.smallest_effect else two_sided_p(estimate, high, settings.smallest_effect)
    return p_zero, p_small


def minimum_detectable_effect(case: Case) -> float | None:
    """2.80 x the standard error read off the 95 % interval: the effect found with 80 % power at alpha 0.05."""
    if case.ci_low is None or case.ci_high is None:
        return None
    return MDE_FACTOR * abs(case.ci_high - case.ci_low) / (2 * Z_CI)


def holm_adjusted(p: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given: the k-th smallest of m is multiplied by
    (m - k + 1), then made non-decreasing in that order, and capped at 1."""
    order = sorted(range(len(p)), key=lambda index: p[index])
    adjusted, running = [1.0] * len(p), 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[index]))
        adjusted[index] = running
    return adjusted


def judge(cases: Sequence[Case], settings: ClaimSettings) -> list[Judgement]:
    """Each case's verdict, p-values and MDE (none where the data cannot decide), and its verdict after
    Holm's adjustment over the decidable cases."""
    judged = []
    for case in cases:
        verdict, reason = case_verdict(case, settings)
        if undecidable_reason(case, settings):
            judged.append(Judgement(case, verdict, reason))
            continue
        p_zero, p_small = p_values(case, settings)
        judged.append(Judgement(case, verdict, reason, p_zero, p_small, minimum_detectable_effect(case)))
    # p_values gives both or neither.
    tested_zero = {index: judgement.p_zero for index, judgement in enumerate(judged) if judgement.p_zero is not None}
    tested_small = {index: judgement.p_small for index, judgement in enumerate(judged) if judgement.p_small is not None}
    zero = dict(zip(tested_zero, holm_adjusted(list(tested_zero.values())), strict=True))
    small = dict(zip(tested_small, holm_adjusted(list(tested_small.values())), strict=True))
    result = []
    for index, judgement in enumerate(judged):
        holm = INCONCLUSIVE
        if judgement.verdict == SUPPORTED and zero[index] < ALPHA:
            holm = SUPPORTED
        elif judgement.verdict == CONTRADICTED and small[index] < ALPHA:
            holm = CONTRADICTED
        result.append(replace(judgement, holm=holm))
    return result


# --- one claim ---------------------------------------------------------------------------------------
def claim_verdict(verdicts: Sequence[str]) -> str:
    """Supported in every case; contradicted in any; partly supported (k of n); else inconclusive."""
    if not verdicts:
        return NOT_MEASURED
    supported, total = verdicts.count(SUPPORTED), len(verdicts)
    if CONTRADICTED in verdicts:
        return CONTRADICTED
    if supported == total:
        return SUPPORTED
    return f"{PARTLY} ({supported} of {total})" if supported else INCONCLUSIVE


def units_needed(judgements: Sequence[Judgement], settings: ClaimSettings) -> int | None:
    """Units per case for an MDE at the SESOI in every inconclusive case whose MDE exceeds it (the MDE
    shrinks as 1 / sqrt(n)), or with fewer than ``MIN_UNITS``: None when no case is undecided for its
    size (the run was large enough to test the claim)."""
    undecided = [judgement for judgement in judgements if judgement.verdict == INCONCLUSIVE]
    needed = [
        math.ceil(judgement.case.n * (judgement.mde / settings.smallest_effect) ** 2)
        for judgement in undecided
        if judgement.mde is not None and judgement.mde > settings.smallest_effect
    ]
    if any(judgement.case.n < MIN_UNITS for judgement in undecided):
        needed.append(MIN_UNITS)
    return max(needed) if needed else None


def case_line(judgement: Judgement, settings: ClaimSettings) -> str:
    """One case as text: estimate and interval, n and MDE, verdict (and after Holm), what else to see."""
    case = judgement.case
    numbers = "no estimate" if case.estimate is None else f"{case.estimate:+.3f}"
    if case.ci_low is not None and case.ci_high is not None and case.estimate is not None:
        numbers = interval(case.estimate, case.ci_low, case.ci_high)
    size = f"n = {counted(case.n, settings.unit)}" + (f", {counted(case.seeds, 'seeds')}" if case.seeds else "")
    if judgement.mde is not None:
        size += f", MDE {judgement.mde:.3f}"
    holm = "" if judgement.holm == judgement.verdict else f", {judgement.holm} after Holm"
    detail = f" ({case.detail})" if case.detail else ""
    return f"{case.label}: {numbers} ({size}): {judgement.verdict}{holm}, {judgement.reason}{detail}"


def sizes(judgements: Sequence[Judgement], unit: str) -> str:
    counts = [judgement.case.n for judgement in judgements]
    low, high = min(counts), max(counts)
    return f"{low} {unit}" if low == high else f"{low}-{high} {unit}"


def claim_row(claim: Claim, settings: ClaimSettings, finding: Finding | None) -> dict:
    """The claims table's row of one claim."""
    row = {"claim": claim.name, "statement": claim.statement, "source": claim.source,
           "effect": settings.effect, "side": "above 0" if settings.side > 0 else "below 0",
           "smallest_effect": settings.smallest_effect, "size_option": settings.size_option}  # fmt: skip
    if finding is None or not finding.cases:
        return {**row, "control": "—", "numbers": "", "n": "", "mde": None, "comparisons": 0, "supported": 0,
                "contradicted": 0, "inconclusive": 0, "cases": 0, "verdict": NOT_MEASURED,
                "holm_verdict": NOT_MEASURED, "too_small": False, "units_needed": None}  # fmt: skip
    judgements = judge(finding.cases, settings)
    verdicts = [judgement.verdict for judgement in judgements]
    mdes = [judgement.mde for judgement in judgements if judgement.mde is not None]
    needed = units_needed(judgements, settings)
    return {**row, "control": finding.control,
            "numbers": "; ".join(case_line(judgement, settings) for judgement in judgements),
            "n": sizes(judgements, settings.unit), "mde": max(mdes) if mdes else None,
            "comparisons": sum(judgement.p_zero is not None for judgement in judgements),
            "supported": verdicts.count(SUPPORTED), "contradicted": verdicts.count(CONTRADICTED),
            "inconclusive": verdicts.count(INCONCLUSIVE), "cases": len(verdicts),
            "verdict": claim_verdict(verdicts),
            "holm_verdict": claim_verdict([judgement.holm for judgement in judgements]),
            "too_small": needed is not None, "units_needed": needed}  # fmt: skip


def claims_table(tables: Tables, context: FigureContext) -> pl.DataFrame:
    """One row per registered claim: statement, effect and SESOI, deciding control, one line per case
    (estimate, interval, n, MDE, verdict), counts of each verdict, the claim's verdict and after Holm,
    and whether this run was too small to test it (with the units per case it would need)."""
    rows = [claim_row(claim, claim.settings, claim.test(tables, context)) for claim in CLAIMS.values()]
    schema = {"mde": pl.Float64, "units_needed": pl.Int64}
    return pl.DataFrame(rows, schema_overrides=schema, infer_schema_length=None)


def settings_table() -> pl.DataFrame:
    """The thresholds of every registered claim, as the report prints them beside the claims table."""
    rows = []
    for claim in CLAIMS.values():
        settings = claim.settings
        rows.append({"claim": claim.name, "effect": settings.effect,
                     "predicted": "above 0" if settings.side > 0 else "below 0",
                     "smallest effect of interest": settings.smallest_effect, "why": settings.why,
                     "n counts": settings.unit, "controls": settings.controls,
                     "the paper's effect": "—" if settings.paper_effect is None else f"{settings.paper_effect:+g}",
                     "n is set by": settings.size_option})  # fmt: skip
    return pl.DataFrame(rows)


# --- contrasts of transfer neurons against drawn sets -------------------------------------------------
SEED_KEYS = ["model", "language", "neuron_type", "baseline"]


def baseline_seeds(result: pl.DataFrame, main_label: str) -> pl.DataFrame:
    """Per model, language, neuron type and baseline kind of a result (``SEED_KEYS``): how many seeds of
    the drawn set ran at the main N (``n_seeds``), to join onto its contrast rows."""
    drawn = main_conditions(result, main_label).filter(pl.col("kind").is_in(list(BASELINE_KINDS)))
    return drawn.group_by("model", "language", "neuron_type", pl.col("kind").alias("baseline")).agg(
        pl.col("seed").n_unique().alias("n_seeds")
    )


def strictest_control(contrasts: pl.DataFrame) -> str | None:
    present = set(contrasts["baseline"].to_list())
    return next((kind for kind in CONTROL_ORDER if kind in present), None)


def control_name(kind: str) -> str:
    return kind.replace("_", "-")


def contrast_cases(
    rows: pl.DataFrame, case_keys: Sequence[str], label: Callable[[tuple[Any, ...]], str] | None = None
) -> Finding | None:
    """One case per value of ``case_keys`` from rows of a contrast table (``summaries.CONTRAST_COLUMNS``:
    ``baseline``, ``difference``, ``ci_low``, ``ci_high``, ``n``, optionally ``n_seeds``): the strictest
    control present decides; every other control's difference is shown beside it.

    ``label(key_values) -> str`` names a case (default: the key values joined by spaces).
    """
    if rows.height == 0:
        return None
    control = strictest_control(rows)
    if control is None:  # no baseline this claim can be judged against: not measured
        return None
    label = label or (lambda values: " ".join(str(value) for value in values))
    cases = []
    for key_values, part in rows.sort(*case_keys).group_by(*case_keys, maintain_order=True):
        by_control = {row["baseline"]: row for row in part.iter_rows(named=True)}
        others = ", ".join(
            f"vs {control_name(kind)} {interval(row['difference'], row['ci_low'], row['ci_high'])}"
            for kind in CONTROL_ORDER
            if kind != control and (row := by_control.get(kind)) is not None
        )
        deciding = by_control.get(control)
        if deciding is None:
            cases.append(Case(label(key_values), None, None, None, 0, others, f"no {control_name(control)} set"))
            continue
        cases.append(Case(label(key_values), deciding["difference"], deciding["ci_low"], deciding["ci_high"],
                          int(deciding["n"]), others, seeds=deciding.get("n_seeds")))  # fmt: skip
    return Finding(f"{control_name(control)} sets", tuple(cases))


def contrast_finding(tables: Tables, analyses: pl.Expr, neuron_type: str) -> Finding | None:
    """Transfer minus each control of ``baseline_contrasts``, per language (and analysis), the strictest
    control deciding.

    ``analyses`` is a polars expression that selects the claim's rows of ``baseline_contrasts`` by
    their ``analysis`` label (each analysis's module builds its labels and this selection).
    """
    contrasts = tables.get("baseline_contrasts")
    if contrasts is None:
        return None
    rows = contrasts.filter(analyses & (pl.col("neuron_type") == neuron_type))
    several = rows.height > 0 and rows["analysis"].n_unique() > 1
    return contrast_cases(rows, ["language", "analysis"] if several else ["language"])

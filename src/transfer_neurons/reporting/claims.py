"""The paper's claims, each tested on this run's summary tables with a plain verdict.

Every claim names the control it is tested against and the numbers it rests on, one case per
language (and QA setting), and gets a verdict: ``supported`` (in every case), ``partly supported``
(in some), ``not supported`` (in none) or ``not measured`` (its table is missing, e.g. an analysis
switched off). Nothing here is written by
hand: change a number in a table and the verdict follows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from transfer_neurons.lazy import lazy_import
from transfer_neurons.names import BASELINE_KINDS, NeuronType

pl = lazy_import("polars")

Tables = Mapping[str, "pl.DataFrame"]
SUPPORTED, PARTLY, NOT_SUPPORTED, NOT_MEASURED = "supported", "partly supported", "not supported", "not measured"
# The strictest control first: it matches what the others match and the write size too.
CONTROL_ORDER = tuple(reversed(BASELINE_KINDS))


@dataclass(frozen=True)
class Finding:
    """What one claim's test found: its control, a line of numbers per case, how many cases hold."""

    control: str
    numbers: list[str]
    holding: int
    total: int

    @property
    def verdict(self) -> str:
        if self.total == 0:
            return NOT_MEASURED
        if self.holding == self.total:
            return SUPPORTED
        return PARTLY if self.holding else NOT_SUPPORTED


def interval(value: float, low: float, high: float) -> str:
    return f"{value:+.3f} [{low:+.3f}, {high:+.3f}]"


def strictest_control(contrasts: pl.DataFrame) -> str | None:
    present = set(contrasts["baseline"].to_list())
    return next((kind for kind in CONTROL_ORDER if kind in present), None)


def contrast_finding(tables: Tables, analyses: list[str], neuron_type: str, sign: int) -> Finding | None:
    """Transfer minus the strictest control, per language (and analysis), holding where the CI is on
    the ``sign`` side of 0 (-1: the transfer neurons lower the measure more than the control)."""
    contrasts = tables.get("baseline_contrasts")
    if contrasts is None:
        return None
    rows = contrasts.filter(pl.col("analysis").is_in(analyses) & (pl.col("neuron_type") == neuron_type))
    control = strictest_control(rows) if rows.height else None
    if control is None:
        return None
    rows = rows.filter(pl.col("baseline") == control).sort("language", "analysis")
    holds = [
        row["ci_high"] is not None and (row["ci_high"] < 0 if sign < 0 else row["ci_low"] > 0)
        for row in rows.iter_rows(named=True)
    ]
    numbers = [
        f"{row['language']}{'' if len(analyses) == 1 else ' ' + row['analysis']}: "
        f"{interval(row['difference'], row['ci_low'], row['ci_high'])}"
        for row in rows.iter_rows(named=True)
    ]
    return Finding(f"{control.replace('_', '-')} sets", numbers, sum(holds), len(holds))


def placement(tables: Tables, context) -> Finding | None:
    """Type-1's median layer in the first half of the model, Type-2's in the last quarter."""
    detection = tables.get("detection_summary")
    if detection is None:
        return None
    n_layers = context.facts["n_layers"]
    rows = detection.filter(pl.col("detector") == context.settings.detector)
    numbers, holds = [], []
    for (lang,), part in rows.group_by("language", maintain_order=True):
        median = dict(zip(part["neuron_type"], part["median_layer"], strict=True))
        depth = {kind: median[kind] / max(n_layers - 1, 1) for kind in median}
        holds.append(depth.get("type1", 1.0) < 0.5 and depth.get("type2", 0.0) >= 0.75)
        numbers.append(f"{lang}: median layer Type-1 {median.get('type1', float('nan')):.0f}, "
                       f"Type-2 {median.get('type2', float('nan')):.0f} of {n_layers}")  # fmt: skip
    return Finding("median depth: Type-1 < 50 %, Type-2 >= 75 %", numbers, sum(holds), len(holds))


def specificity(tables: Tables, context) -> Finding | None:
    """A larger share of Type-2 than of Type-1 neurons is language-specific (eta^2 > 0.1, p < 0.05)."""
    summary = tables.get("specificity_summary")
    if summary is None:
        return None
    rows = summary.filter(pl.col("grouping") == "language")
    numbers, holds = [], []
    for (lang,), part in rows.group_by("language", maintain_order=True):
        share = dict(zip(part["neuron_type"], part["share_eta_0.1_p_0.05"], strict=True))
        holds.append(share.get("type2", 0.0) > share.get("type1", 0.0))
        numbers.append(
            f"{lang}: Type-1 {share.get('type1', float('nan')):.2f}, Type-2 {share.get('type2', float('nan')):.2f}"
        )
    return Finding("Type-1 neurons of the same language", numbers, sum(holds), len(holds))


def selectivity(tables: Tables, context) -> Finding | None:
    """Type-1 deactivation raises the loss of the language's own text more than of English text."""
    table = tables.get("loss_selectivity")
    if table is None:
        return None
    rows = table.filter(pl.col("group") == NeuronType.TYPE1.value).sort("language")
    holds = [row["ci_low"] > 0 for row in rows.iter_rows(named=True)]
    numbers = [f"{row['language']}: {interval(row['difference'], row['ci_low'], row['ci_high'])} nats"
               for row in rows.iter_rows(named=True)]  # fmt: skip
    return Finding("the same pairs' English side", numbers, sum(holds), len(holds))


def interchange(tables: Tables, context) -> Finding | None:
    """English activations of the Type-1 neurons, written back into the corrupted L2 run, restore
    more than half of the mutual k-NN alignment (cumulative over every layer of the set)."""
    summary = tables.get("patching_summary")
    if summary is None:
        return None
    rows = summary.filter(
        (pl.col("metric") == "mutual_knn") & (pl.col("scope") == "cumulative") & (pl.col("source") == "english")
        & (pl.col("neuron_set") == "transfer")
    )  # fmt: skip
    rows = rows.filter(pl.col("patched_layer") == pl.col("patched_layer").max().over("language")).sort("language")
    # A null recovery: deactivation changed nothing there, so there was nothing to restore.
    measured = rows.filter(pl.col("recovery").is_not_null())
    holds = [row["recovery"] > 0.5 for row in measured.iter_rows(named=True)]
    numbers = [
        f"{row['language']}: recovery " + ("undefined (no change to restore)" if row["recovery"] is None
                                           else f"{row['recovery']:.2f}")
        for row in rows.iter_rows(named=True)
    ]  # fmt: skip
    return Finding("recovery 0.5 (0: corrupted, 1: clean)", numbers, sum(holds), len(holds))


@dataclass(frozen=True)
class Claim:
    name: str
    statement: str
    source: str  # "paper" or "beyond the paper"
    test: Callable[[Tables, object], Finding | None]


CLAIMS = (
    Claim("placement", "Type-1 neurons sit in the early and middle layers, Type-2 neurons in the last ones",
          "paper", placement),
    Claim("alignment", "Deactivating Type-1 neurons lowers English–L2 alignment (mutual k-NN) beyond controls",
          "paper", lambda tables, context: contrast_finding(tables, ["alignment: knn_share"], "type1", -1)),
    Claim("qa", "Deactivating Type-1 neurons lowers multilingual QA (MKQA F1) beyond controls", "paper",
          lambda tables, context: contrast_finding(tables, ["MKQA F1 (prompt)", "MKQA F1 (prompt_last)"], "type1", -1)),
    Claim("specificity", "Type-2 neurons are more language-specific than Type-1 neurons", "paper", specificity),
    Claim("attention", "Deactivating Type-1 neurons shifts the last token's attention beyond controls", "paper",
          lambda tables, context: contrast_finding(tables, ["attention JS"], "type1", 1)),
    Claim("selectivity", "The damage is selective: Type-1 deactivation raises the L2's loss more than English's",
          "beyond the paper", selectivity),
    Claim("interchange", "The Type-1 neurons' English values carry what deactivation removes (interchange)",
          "beyond the paper", interchange),
)  # fmt: skip


def claims_table(tables: Tables, context) -> pl.DataFrame:
    """One row per claim: statement, source, control, numbers (one line per language) and verdict."""
    rows = []
    for claim in CLAIMS:
        finding = claim.test(tables, context) or Finding("—", [], 0, 0)
        rows.append({"claim": claim.name, "statement": claim.statement, "source": claim.source,
                     "control": finding.control, "numbers": "; ".join(finding.numbers),
                     "holding": finding.holding, "cases": finding.total, "verdict": finding.verdict})  # fmt: skip
    return pl.DataFrame(rows)

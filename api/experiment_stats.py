"""An experiment's results from its event counters: impressions, clicks, CTR per arm with a 95%
interval, the probability that each arm beats control, and the lift over control with its 95%
interval. Used by GET /experiments/{id} and `clik experiments report`.

- CTR interval: Wilson's score interval (right at small counts and near 0, where the normal
  approximation gives negative CTRs).
- P(arm beats control): Monte Carlo over the Beta(1 + clicks, 1 + impressions - clicks)
  posteriors (uniform prior), a fixed seed so a report reads the same twice.
- Lift: CTR(arm) / CTR(control) - 1; its interval is the log risk-ratio (Katz) interval,
  exp(ln RR ± 1.96 sqrt(1/c1 - 1/n1 + 1/c0 - 1/n0)) - 1, undefined (None) while either arm has
  no click.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np

from indexer.experiments import ARM_SEPARATOR, Experiment

Z95 = 1.959963984540054
POSTERIOR_DRAWS = 20_000


def wilson(clicks: int, impressions: int, z: float = Z95) -> tuple[float, float] | None:
    if impressions <= 0:
        return None
    p = clicks / impressions
    denom = 1 + z * z / impressions
    centre = (p + z * z / (2 * impressions)) / denom
    half = z * math.sqrt(p * (1 - p) / impressions + z * z / (4 * impressions * impressions)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def lift_interval(c1: int, n1: int, c0: int, n0: int, z: float = Z95) -> tuple[float, float] | None:
    if min(c1, c0) <= 0 or min(n1, n0) <= 0:
        return None
    rr = (c1 / n1) / (c0 / n0)
    se = math.sqrt(1 / c1 - 1 / n1 + 1 / c0 - 1 / n0)
    return math.exp(math.log(rr) - z * se) - 1, math.exp(math.log(rr) + z * se) - 1


def prob_beats(c1: int, n1: int, c0: int, n0: int, draws: int = POSTERIOR_DRAWS, seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    a = rng.beta(1 + c1, 1 + max(n1 - c1, 0), draws)
    b = rng.beta(1 + c0, 1 + max(n0 - c0, 0), draws)
    return float(np.mean(a > b))


def arm_totals(
    experiment: Experiment, counters: Iterable[Mapping[tuple[str, str, str, str], int]]
) -> dict[str, dict[str, int]]:
    """arm name -> {impression, click, conversion} summed over exhibitions' counters."""
    totals = {a.name: {"impression": 0, "click": 0, "conversion": 0} for a in experiment.arms}
    prefix = experiment.experiment_id + ARM_SEPARATOR
    for table in counters:
        for (_version, label, _product, kind), n in table.items():
            if label.startswith(prefix) and label[len(prefix) :] in totals and kind in totals[label[len(prefix) :]]:
                totals[label[len(prefix) :]][kind] += int(n)
    return totals


def report(experiment: Experiment, totals: Mapping[str, Mapping[str, int]]) -> dict:
    """The results document (JSON-ready)."""
    control = totals[experiment.control_arm]
    c0, n0 = control["click"], control["impression"]
    arms = []
    for arm in experiment.arms:
        t = totals[arm.name]
        c, n = t["click"], t["impression"]
        ci = wilson(c, n)
        is_control = arm.name == experiment.control_arm
        lift = (c / n) / (c0 / n0) - 1 if n and n0 and c0 else None
        li = None if is_control else lift_interval(c, n, c0, n0)
        arms.append(
            {
                "arm": arm.name,
                "label": arm.label(experiment.experiment_id),
                "policy": arm.policy,
                "share": arm.share,
                "control": is_control,
                "impressions": n,
                "clicks": c,
                "conversions": t["conversion"],
                "ctr": c / n if n else None,
                "ctr_ci95": list(ci) if ci else None,
                "p_beats_control": None if is_control or not (n and n0) else prob_beats(c, n, c0, n0),
                "lift": None if is_control else lift,
                "lift_ci95": list(li) if li else None,
            }
        )
    return {"experiment_id": experiment.experiment_id, "control_arm": experiment.control_arm, "arms": arms}


def table(doc: Mapping) -> str:
    """The report as a fixed-width text table (the CLI prints it)."""

    def pct(x: float | None) -> str:
        return "-" if x is None else f"{100 * x:.2f}%"

    def interval(ci: list | None) -> str:
        return "-" if not ci else f"[{pct(ci[0])}, {pct(ci[1])}]"

    lines = [
        f"experiment {doc['experiment_id']} (control: {doc['control_arm']})",
        f"{'arm':<16}{'policy':<9}{'impr.':>9}{'clicks':>8}{'CTR':>9}  {'CTR 95%':<20}{'P(>ctl)':>8}"
        f"{'lift':>9}  lift 95%",
    ]
    for a in doc["arms"]:
        p = "-" if a["p_beats_control"] is None else f"{a['p_beats_control']:.3f}"
        lines.append(
            f"{a['arm']:<16}{a['policy']:<9}{a['impressions']:>9}{a['clicks']:>8}{pct(a['ctr']):>9}  "
            f"{interval(a['ctr_ci95']):<20}{p:>8}{pct(a['lift']):>9}  {interval(a['lift_ci95'])}"
        )
    return "\n".join(lines)

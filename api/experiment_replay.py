"""Off-policy replay: what CTR would a candidate policy (a model version's top product) have
had, estimated from logged answers of a randomising arm (control=random, explore) without
showing it to anyone.

Each logged impression i carries the product a_i shown, its propensity p_i (the probability the
logging arm had of showing it, from the answer) and the reward r_i (a click with the same
request_id on that product). With w_i = 1[candidate shows a_i] / p_i:

    IPS   = sum(w_i r_i) / n                 unbiased while every p_i > 0 where the candidate acts
    SNIPS = sum(w_i r_i) / sum(w_i)          self-normalised: a little biased, far less variance

The 95% interval of IPS is the normal one over the n terms w_i r_i; `matched` (how many
impressions the candidate agrees with) and the effective sample size (sum w)^2 / sum w^2 say
how much data the estimate really rests on.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping

from api.experiment_stats import Z95


def logged_answers(events: Iterable[Mapping], arms: set[str]) -> list[dict]:
    """One row per logged impression of these arms: exhibition, product, propensity, reward."""
    shown: dict[str, dict] = {}
    clicked: set[tuple[str, str]] = set()
    for e in events:
        rid = e.get("request_id")
        if not rid:
            continue
        if e.get("type") == "impression" and e.get("arm") in arms and e.get("propensity"):
            shown.setdefault(
                str(rid),
                {
                    "exhibition_id": e["exhibition_id"],
                    "product_id": e["product_id"],
                    "propensity": float(e["propensity"]),
                    "arm": e["arm"],
                },
            )
        elif e.get("type") == "click":
            clicked.add((str(rid), str(e["product_id"])))
    return [{**row, "reward": 1.0 if (rid, row["product_id"]) in clicked else 0.0} for rid, row in shown.items()]


def estimate(rows: list[dict], choose: Callable[[str], str | None]) -> dict:
    """IPS and SNIPS of the policy `choose(exhibition_id) -> product_id`."""
    n = len(rows)
    choice: dict[str, str | None] = {}
    terms, weights = [], []
    for row in rows:
        ex = row["exhibition_id"]
        if ex not in choice:
            choice[ex] = choose(ex)
        w = 1.0 / row["propensity"] if choice[ex] == row["product_id"] else 0.0
        weights.append(w)
        terms.append(w * row["reward"])
    if n == 0:
        return {
            "impressions": 0,
            "matched": 0,
            "ips": None,
            "ips_ci95": None,
            "snips": None,
            "effective_sample_size": 0.0,
            "logged_ctr": None,
        }
    ips = sum(terms) / n
    var = sum((t - ips) ** 2 for t in terms) / max(n - 1, 1)
    half = Z95 * math.sqrt(var / n)
    total_w = sum(weights)
    return {
        "impressions": n,
        "matched": sum(1 for w in weights if w > 0),
        "ips": ips,
        "ips_ci95": [ips - half, ips + half],
        "snips": sum(terms) / total_w if total_w else None,
        "effective_sample_size": total_w**2 / sum(w * w for w in weights) if total_w else 0.0,
        "logged_ctr": sum(r["reward"] for r in rows) / n,
    }

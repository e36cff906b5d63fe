"""The rollout gate: what must hold before a filled model version becomes the active one.

A re-index (worker/reindex.py) fills a version's vectors; before ``switch`` it asks ``decide``,
which checks, in order:

1. **coverage**: the new version has vectors for at least ``min_coverage`` of the products the
   active version covers (default all of them). A re-index that could not read the images
   (file roots unknown to this process, an image host down) is refused here, with the reasons
   grouped, and the active version and its vectors stay as they are.
2. **canary** (worker/canary.py): a sample of exhibitions ranked with both versions; the share
   whose top product stays the same must reach ``min_top1_agreement`` (default 0: reported only).
3. **confirmation**: with ``require_confirmation`` someone must say yes (the CLI asks, or
   ``clik models confirm VERSION`` for a Celery re-index waiting in ``awaiting_confirmation``).

The first activation of a store (no active version) has nothing to compare with and passes 1-2.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from indexer.store import VectorStore

SWITCH, REFUSE, WAIT = "switch", "refuse", "wait"


@dataclass(frozen=True)
class RolloutPolicy:
    min_coverage: float = 1.0  # of the products the active version covers (0: no gate)
    canary_exhibitions: int = 20  # exhibitions ranked by both versions before the switch (0: none)
    min_top1_agreement: float = 0.0  # share of canary exhibitions keeping their top product
    require_confirmation: bool = False  # a person confirms after reading the canary report


@dataclass(frozen=True)
class Decision:
    action: str  # switch | refuse | wait (for a confirmation)
    message: str  # one screen for a person: why, with numbers
    coverage: dict  # {"products", "encoded", "new", "active"} when measured
    canary: dict | None = None


_VARIABLE = re.compile(r"(?:https?|file)://\S+|'[^']*'|\"[^\"]*\"|(?<![\w.])/\S*|\b\d+x\d+\b|\b\d{4,}\b")


def reason_kind(reason: str) -> str:
    """A skip reason with its paths, URLs, quoted names and sizes blanked: reasons of one kind
    group together ('file not found: …')."""
    return _VARIABLE.sub("…", reason).strip()


def group_reasons(skipped: Mapping[str, str], limit: int = 8) -> list[tuple[str, int, str]]:
    """(kind, count, one example) of skip reasons, most frequent first."""
    kinds = Counter(reason_kind(r) for r in skipped.values())
    examples: dict[str, str] = {}
    for reason in skipped.values():
        examples.setdefault(reason_kind(reason), reason)
    return [(kind, n, examples[kind]) for kind, n in kinds.most_common(limit)]


def coverage_gate(
    store: VectorStore, new: str, active: str | None, skipped: Mapping[str, str], policy: RolloutPolicy
) -> Decision:
    versions = [new] + ([active] if active and active != new else [])
    cov = store.coverage(versions)
    figures = {
        "products": cov.products,
        "encoded": cov.encoded,
        "new": cov.covered[new],
        "active": cov.covered.get(active, 0) if active else None,
    }
    if not active or active == new:
        return Decision(SWITCH, "no active version to compare with", figures)
    have, had = cov.covered[new], cov.covered[active]
    need = math.ceil(policy.min_coverage * had - 1e-9)
    summary = (
        f"new version covers {have} of {cov.products} products, the active one {had} "
        f"(required: {need}, {policy.min_coverage:.0%} of the active's)"
    )
    if have >= need:
        return Decision(SWITCH, summary, figures)
    lines = [f"refused: {summary}; the active version and its vectors are unchanged."]
    if skipped:
        lines.append(f"{len(skipped)} images could not be re-encoded:")
        lines += [f"  {n:>6} × {kind}   (e.g. {example})" for kind, n, example in group_reasons(skipped)]
        if any("outside the allowed roots" in r for r in skipped.values()):
            lines.append(
                "  hint: local images are read only under CLIK_FILE_ROOTS or the folders the "
                "store recorded (`clik index FOLDER` records its folder)"
            )
    lines.append(
        "fix the cause and run the activation again (skipped images are retried), or lower "
        "the bar with --min-coverage / CLIK_ROLLOUT_MIN_COVERAGE"
    )
    return Decision(REFUSE, "\n".join(lines), figures)


def decide(
    store: VectorStore,
    new: str,
    active: str | None,
    skipped: Mapping[str, str],
    policy: RolloutPolicy,
    run_canary: Callable[[], dict] | None = None,
    confirmed: bool = False,
    confirm: Callable[[Decision], bool] | None = None,
) -> Decision:
    """Coverage, then canary, then confirmation. ``run_canary`` returns a canary report dict
    (worker.canary.CanaryReport.as_dict) or is None when no text side can be loaded here;
    ``confirm`` asks a person now (CLI), else the decision waits for ``confirmed``."""
    gate = coverage_gate(store, new, active, skipped, policy)
    if gate.action == REFUSE:
        return gate
    canary = None
    message = gate.message
    if run_canary is not None and active and active != new and policy.canary_exhibitions > 0:
        canary = run_canary()
        message += "\n" + canary_summary(canary)
        if canary["exhibitions"] and canary["top1_agreement"] < policy.min_top1_agreement:
            return Decision(
                REFUSE,
                f"refused: top-1 agreement {canary['top1_agreement']:.0%} is below the "
                f"required {policy.min_top1_agreement:.0%}\n{message}",
                gate.coverage,
                canary,
            )
    if policy.require_confirmation and not confirmed and active and active != new:
        pending = Decision(WAIT, message, gate.coverage, canary)
        if confirm is None or not confirm(pending):
            return pending
    return Decision(SWITCH, message, gate.coverage, canary)


def canary_summary(canary: Mapping) -> str:
    if not canary.get("exhibitions"):
        return "canary: no exhibitions with ranked products to compare"
    off = canary["offtopic_top1"]
    return (
        f"canary on {canary['exhibitions']} exhibitions: top-1 unchanged in {canary['top1_agreement']:.0%} "
        f"({canary['top1_changed']} changed), mean rank correlation {canary['rank_correlation']:+.2f}, "
        f"top-1 looking off-topic: active {off['active']:.0%}, new {off['new']:.0%}"
    )

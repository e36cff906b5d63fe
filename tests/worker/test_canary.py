"""The rollout canary and gate over a real (embedded) store with controlled vectors: what changes
between two versions is known, so the figures are checked exactly."""

from __future__ import annotations

import numpy as np
import pytest

from clik.topic_fit import looks_off_topic
from indexer.config import EmbeddedStoreConfig
from indexer.embedded_store import EmbeddedStore
from worker.canary import run_canary, sample_exhibitions
from worker.rollout import RolloutPolicy, decide, group_reasons

DIM = 4
AXES = np.eye(DIM, dtype=np.float32)


@pytest.fixture()
def store(tmp_path):
    s = EmbeddedStore(EmbeddedStoreConfig(path=tmp_path / "store"))
    for name in ("old", "new"):
        s.register_version(name, DIM)
    s.activate("old")
    # Exhibition "e": five on-topic products near axis 0, one foreign product on axis 3.
    rng = np.random.default_rng(0)
    for i in range(6):
        s.put_product(f"p{i}", f"https://img/{i}.jpg")
        s.mark_encoded(f"p{i}", f"h{i}")
        vec = AXES[3] if i == 5 else AXES[0] + 0.1 * rng.standard_normal(DIM).astype(np.float32)
        s.put_vector("old", f"h{i}", vec)
        s.put_vector("new", f"h{i}", vec)
    s.put_exhibition("e", {"name": "shirts"}, [f"p{i}" for i in range(6)])
    s.put_exhibition("f", {"name": "empty"}, [])
    yield s
    s.close()


def sides(queries: dict[str, np.ndarray]):
    """version -> (topic -> (topic embedding on axis 0, that version's ranking query))."""
    return lambda version: lambda topic: (AXES[0], queries[version])


def test_same_ranking_agrees_fully(store):
    report = run_canary(store, "old", "new", sides({"old": AXES[0], "new": AXES[0]}), sample=10)
    assert report.exhibitions == 1  # the empty exhibition is not compared
    assert (report.top1_changed, report.top1_agreement) == (0, 1.0)
    assert report.rank_correlation == pytest.approx(1.0)
    assert report.offtopic_top1 == {"active": 0.0, "new": 0.0}


def test_a_version_that_puts_the_foreign_product_first_is_seen(store):
    # The new version's query points at the foreign product: its top-1 changes, the order
    # reverses, and the new top-1 is the outlier of the exhibition's topic similarities.
    report = run_canary(store, "old", "new", sides({"old": AXES[0], "new": AXES[3] - AXES[0]}), sample=10)
    assert (report.top1_changed, report.top1_agreement) == (1, 0.0)
    assert report.changes == [{"exhibition": "e", "active": report.changes[0]["active"], "new": "p5"}]
    assert report.rank_correlation < 0  # the foreign product jumps from last to first
    assert report.offtopic_top1 == {"active": 0.0, "new": 1.0}

    policy = RolloutPolicy(min_top1_agreement=0.5)
    canary = lambda: report.as_dict()  # noqa: E731
    decision = decide(store, "new", "old", {}, policy, canary)
    assert decision.action == "refuse" and "top-1 agreement 0% is below the required 50%" in decision.message
    assert decide(store, "new", "old", {}, RolloutPolicy(), canary).action == "switch"
    waiting = decide(store, "new", "old", {}, RolloutPolicy(require_confirmation=True), canary)
    assert waiting.action == "wait" and "top-1 looking off-topic: active 0%, new 100%" in waiting.message
    confirmed = decide(store, "new", "old", {}, RolloutPolicy(require_confirmation=True), canary, confirmed=True)
    assert confirmed.action == "switch"


def test_coverage_gate_counts_products_not_vectors(store):
    store.register_version("partial", DIM)
    store.put_vectors("partial", [(f"h{i}", AXES[0]) for i in range(5)])  # h5 missing
    refused = decide(store, "partial", "old", {"h5": "file not found: /img/5.jpg"}, RolloutPolicy())
    assert refused.action == "refuse" and refused.coverage == {"products": 6, "encoded": 6, "new": 5, "active": 6}
    assert "1 × file not found: …   (e.g. file not found: /img/5.jpg)" in refused.message
    assert decide(store, "partial", "old", {}, RolloutPolicy(min_coverage=0.8)).action == "switch"
    assert decide(store, "partial", None, {}, RolloutPolicy()).action == "switch"  # first activation


def test_helpers():
    assert looks_off_topic(np.array([0.8, 0.82, 0.79, 0.81, 0.1])).tolist() == [False] * 4 + [True]
    assert not looks_off_topic(np.array([0.5, 0.5, 0.5])).any()  # no spread: nobody is an outlier
    assert group_reasons(
        {"a": "HTTP 404 from http://x/1.jpg", "b": "HTTP 404 from http://x/2.jpg", "c": "corrupt image: truncated"}
    ) == [
        ("HTTP 404 from …", 2, "HTTP 404 from http://x/1.jpg"),
        ("corrupt image: truncated", 1, "corrupt image: truncated"),
    ]


def test_sample_is_spread_and_deterministic(store):
    for i in range(20):
        store.put_exhibition(f"x{i:02d}", {"name": "x"}, [])
    picked = sample_exhibitions(store, 5)
    assert len(picked) == 5 and picked == sample_exhibitions(store, 5)
    assert picked[0] == "e" and picked[-1] != "x19" and len(set(picked)) == 5

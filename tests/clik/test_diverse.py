"""The diverse selection on hand-made vectors: every rule can be seen to hold or break."""

from __future__ import annotations

import numpy as np

from clik.diverse import DiverseOptions, diversity_figures, select_diverse


def _unit(rows):
    m = np.asarray(rows, dtype=np.float32)
    return m / np.linalg.norm(m, axis=1, keepdims=True)


def test_first_pick_is_the_best_and_families_appear_once():
    rng = np.random.default_rng(0)
    v = _unit(rng.standard_normal((40, 16)))
    scores = rng.standard_normal(40)
    families = [f"f{i % 8}" for i in range(40)]
    picked = select_diverse(scores, v, 6, families=families)
    assert picked[0] == int(np.argmax(scores))
    assert len({families[i] for i in picked}) == 6 == len(picked)
    plain = list(np.argsort(-scores)[:6])
    assert select_diverse(scores, v, 6, options=DiverseOptions(trade_off=1.0, duplicate_threshold=1.1)) == plain


def test_near_duplicates_never_both_and_redundancy_trades_off():
    base = _unit([[1, 0, 0], [0.999, 0.04, 0], [0.8, 0.6, 0], [0, 0, 1]])
    scores = np.array([1.0, 0.99, 0.98, 0.5])
    picked = select_diverse(scores, base, 3)
    assert picked[0] == 0 and 1 not in picked  # row 1 is row 0's near-duplicate (cos 0.999)
    # with a weak relevance weight the orthogonal image beats the similar, better-scored one
    assert select_diverse(scores, base, 2, options=DiverseOptions(trade_off=0.3))[1] == 3
    assert select_diverse(scores, base, 2, options=DiverseOptions(trade_off=0.9))[1] == 2


def test_pool_exhausted_searches_everything_and_rules_can_leave_fewer():
    v = _unit(np.eye(30)[:, :30] + 0.01)
    scores = np.linspace(1, 0, 30)
    families = ["a"] * 25 + ["b", "c", "d", "e", "f"]  # the best 25 are one garment
    picked = select_diverse(scores, v, 6, families=families, options=DiverseOptions(pool=10))
    assert [families[i] for i in picked] == ["a", "b", "c", "d", "e", "f"]
    assert len(select_diverse(scores, v, 6, families=["a"] * 30)) == 1


def test_pins_blocked_rows_and_flagged_ones():
    rng = np.random.default_rng(1)
    v = _unit(rng.standard_normal((10, 8)))
    scores = np.arange(10, 0, -1, dtype=float)  # row 0 best
    flagged = np.zeros(10, dtype=bool)
    flagged[1] = True
    eligible = np.ones(10, dtype=bool)
    eligible[2] = False
    picked = select_diverse(
        scores, v, 10, flagged=flagged, eligible=eligible, fixed={0: 9}, options=DiverseOptions(duplicate_threshold=1.1)
    )
    assert picked[0] == 9 and 2 not in picked and picked[-1] == 1 and len(picked) == 9


def test_diversity_figures():
    v = _unit([[1, 0], [1, 0], [0, 1]])
    distinct, similarity = diversity_figures(v, ["a", "a", None])
    assert distinct == 2 and abs(similarity - 1 / 3) < 1e-6

import numpy as np
import pytest

from clik.metrics import evaluate_groups, predicted_ranks, random_baseline, reciprocal_rank, top1_true_rank, true_ranks


def test_hand_made_rankings():
    criterion = [10, 50, 30, 20]  # image 1 is best, image 2 second
    perfect = [4, 9, 7, 1]
    assert reciprocal_rank(perfect, criterion) == 1.0
    assert top1_true_rank(perfect, criterion) == 1
    # Model puts image 2 (true rank 2) first and the true best third.
    scores = [0.5, 0.4, 0.9, 0.2]
    assert reciprocal_rank(scores, criterion) == pytest.approx(1 / 3)
    assert top1_true_rank(scores, criterion) == 2
    m = evaluate_groups([(perfect, criterion), (scores, criterion)])
    assert m.mrr == pytest.approx((1 + 1 / 3) / 2)
    assert m.topk_top1 == {1: 0.5, 3: 1.0, 5: 1.0}


def test_ties_in_criterion_any_tied_best_counts():
    criterion = [5, 5, 1]
    assert list(true_ranks(criterion)) == [1, 1, 3]
    assert reciprocal_rank([0.1, 0.9, 0.5], criterion) == 1.0  # image 1 is a tied best
    assert top1_true_rank([0.1, 0.9, 0.5], criterion) == 1


def test_ties_in_scores_count_against_the_model():
    criterion = [3, 2, 1]
    constant = [0.0, 0.0, 0.0]
    assert list(predicted_ranks(constant)) == [3, 3, 3]
    assert reciprocal_rank(constant, criterion) == pytest.approx(1 / 3)
    assert top1_true_rank(constant, criterion) == 3


def test_random_baseline_matches_the_paper_and_simulation():
    paper = random_baseline([np.arange(50)])
    assert paper.mrr == pytest.approx(0.0899, abs=1e-4)
    assert paper.topk_top1 == {1: 0.02, 3: pytest.approx(0.06), 5: pytest.approx(0.1)}
    rng = np.random.default_rng(0)
    criterion = np.array([3, 3, 2, 1, 1, 0])
    sims = evaluate_groups((rng.random(6), criterion) for _ in range(20000))
    exact = random_baseline([criterion])
    assert sims.mrr == pytest.approx(exact.mrr, abs=0.01)
    assert sims.topk_top1[1] == pytest.approx(exact.topk_top1[1], abs=0.01)


def test_bad_input_is_refused():
    with pytest.raises(ValueError):
        reciprocal_rank([1.0], [1.0])
    with pytest.raises(ValueError):
        reciprocal_rank([1.0, float("nan")], [1.0, 2.0])
    with pytest.raises(ValueError):
        evaluate_groups([])

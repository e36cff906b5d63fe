"""Each loss against a value computed by hand on a tiny case."""

import math

import pytest
import torch

from clik.losses import ClikLoss, MatchingLoss, PairwiseLoss, PointwiseLoss, RankingLoss, TripletLoss

E0, E1 = [1.0, 0.0], [0.0, 1.0]


def test_matching_loss_two_pairs():
    # Orthogonal unit pairs: cos = 1 on the diagonal, 0 off it. Each row's CE is
    # -log(e^{1/t} / (e^{1/t} + e^0)) = log(1 + e^{-1/t}); both directions equal.
    t = 0.5
    topic = torch.tensor([E0, E1])
    image = torch.tensor([[3.0, 0.0], [0.0, 2.0]])  # unnormalised on purpose
    expected = math.log(1 + math.exp(-1 / t))
    assert MatchingLoss(t)(topic, image).item() == pytest.approx(expected, rel=1e-6)


def test_matching_loss_is_symmetric_average():
    t = 1.0
    topic = torch.tensor([E0, E1])
    image = torch.tensor([E0, [1.0, 1.0]])  # image 1 at 45 degrees
    c = 1 / math.sqrt(2)
    # logits S (topic x image) = [[1, c], [0, c]]
    s2i = (-math.log(math.e / (math.e + math.exp(c))) - math.log(math.exp(c) / (1 + math.exp(c)))) / 2
    i2s = (-math.log(math.e / (math.e + 1)) - math.log(math.exp(c) / (math.exp(c) + math.exp(c)))) / 2
    assert MatchingLoss(t)(topic, image).item() == pytest.approx((s2i + i2s) / 2, rel=1e-6)


def test_ranking_loss_one_group():
    t = 0.5
    query = torch.tensor([E0])
    images = torch.tensor([[E1, E0, [-1.0, 0.0]]])  # cos 0, 1, -1; best is index 1
    logits = [0.0, 2.0, -2.0]
    expected = -math.log(math.exp(2) / sum(math.exp(v) for v in logits))
    assert RankingLoss(t)(query, images, torch.tensor([1])).item() == pytest.approx(expected, rel=1e-5)


def test_clik_loss_weights():
    torch.manual_seed(0)
    args = (torch.randn(4, 8), torch.randn(4, 8), torch.randn(2, 8), torch.randn(2, 5, 8), torch.tensor([0, 3]))
    out = ClikLoss(0.07, w_match=1.0, w_rank=20.0)(*args)
    assert out.total.item() == pytest.approx(out.matching.item() + 20 * out.ranking.item(), rel=1e-6)
    swapped = ClikLoss(0.07, w_match=20.0, w_rank=1.0)(*args)
    assert swapped.total.item() == pytest.approx(20 * out.matching.item() + out.ranking.item(), rel=1e-6)


def test_triplet_loss():
    topic = torch.tensor([E0])
    pos = torch.tensor([[1.0, 1.0]])  # |t - p|^2 = 2 - 2cos45 = 2 - sqrt2
    neg = torch.tensor([E1])  # |t - n|^2 = 2
    expected = max(2 - math.sqrt(2) - 2 + 0.2, 0.0)
    assert TripletLoss(0.2)(topic, pos, neg).item() == pytest.approx(expected, abs=1e-6)
    # A negative closer than the positive costs more than the margin.
    assert TripletLoss(0.2)(topic, neg, pos).item() == pytest.approx(math.sqrt(2) + 0.2, rel=1e-6)


def test_pairwise_loss():
    ci, cj = torch.tensor([2.0, 0.0, 1.0]), torch.tensor([1.0, 0.0, 1.0])
    crit_i, crit_j = torch.tensor([5.0, 1.0, 3.0]), torch.tensor([1.0, 5.0, 3.0])
    # y = 1, 0, 0.5 (tie); diffs 1, 0, 0
    terms = [-math.log(1 / (1 + math.exp(-1))), -math.log(0.5), -math.log(0.5)]
    assert PairwiseLoss()(ci, cj, crit_i, crit_j).item() == pytest.approx(sum(terms) / 3, rel=1e-6)


def test_pointwise_loss():
    assert PointwiseLoss()(torch.tensor([1.0, 3.0]), torch.tensor([2.0, 1.0])).item() == pytest.approx((1 + 4) / 2)


def test_listwise_loss_weights_every_image_by_engagement_and_ties_alike():
    from clik.losses import ListwiseRankingLoss

    torch.manual_seed(0)
    query, images = torch.randn(1, 8), torch.randn(1, 4, 8)
    # A very sharp target on a group with one best image is the paper's best-of-K loss.
    sharp = ListwiseRankingLoss(temperature=0.1, target_temperature=0.01)(query, images, torch.tensor([[5.0, 0, 0, 0]]))
    torch.testing.assert_close(sharp, RankingLoss(0.1)(query, images, torch.tensor([0])))
    # Two equally good images share the target: a query pointing at either costs the same, and
    # less than one pointing at an image that did worse.
    unit_images = torch.eye(4, 8).unsqueeze(0)
    tied = torch.tensor([[2.0, 2.0, 1.0, 0.0]])
    loss = ListwiseRankingLoss(temperature=0.5, target_temperature=0.5)
    at_first, at_second, at_third = (loss(torch.eye(8)[i : i + 1], unit_images, tied) for i in range(3))
    torch.testing.assert_close(at_first, at_second)
    assert at_third > at_first

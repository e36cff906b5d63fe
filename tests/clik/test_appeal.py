"""The appeal coordinate (clik/appeal.py): unit vectors, and a score that is the cosine plus the
weighted prior, exactly."""

import math

import pytest
import torch
import torch.nn.functional as F

import clik
from clik.appeal import EPSILON, image_vector, query_share, ranking_query, topic_vector


def test_vectors_stay_unit_and_the_score_is_the_cosine_plus_the_weighted_prior():
    torch.manual_seed(0)
    learned_images, learned_query = torch.randn(6, 15), torch.randn(1, 16)
    prior = torch.tensor([-1.0, -0.4, 0.0, 0.2, 0.7, 1.0])
    weight = 1.5
    share = torch.tensor(query_share(weight))
    images = image_vector(learned_images, prior)
    query = ranking_query(learned_query, share)
    assert torch.allclose(images.norm(dim=-1), torch.ones(6), atol=1e-6)
    assert torch.allclose(query.norm(dim=-1), torch.ones(1), atol=1e-6)
    cosine = F.normalize(learned_images, dim=-1) @ F.normalize(learned_query[0, :-1], dim=0)
    beta = float(share)
    expected = math.sqrt(1 - beta**2) * torch.sqrt(1 - (EPSILON * prior) ** 2) * cosine + beta * EPSILON * prior
    assert torch.allclose(images @ query[0], expected, atol=1e-6)
    # worth `weight` times the cosine: beta * EPSILON / sqrt(1 - beta^2)
    assert beta * EPSILON / math.sqrt(1 - beta**2) == pytest.approx(weight)
    topics = topic_vector(torch.randn(3, 15))
    assert torch.equal(topics[:, -1], torch.zeros(3))


def test_an_unfitted_prior_ranks_by_the_learned_cosine_alone():
    cfg = clik.get_model_config("clik-tiny-test")
    cfg.appeal_prior = True
    model = clik.ClikModel(cfg, load_weights=False).eval()
    assert (
        model.image.proj.out_features == cfg.embed_dim - 1 and model.topic.text.proj.out_features == cfg.embed_dim - 1
    )
    features = torch.randn(5, model.image.width)
    with torch.no_grad():
        vectors = model.image.project(features)
        query = model.ranking_query(model.topic.text.project(torch.randn(1, model.topic.text.width)))
    assert torch.equal(vectors[:, -1], torch.zeros(5)) and float(query[0, -1]) == 0.0
    with torch.no_grad():
        cosine = F.normalize(model.image.proj(features), dim=-1) @ F.normalize(query[0, :-1], dim=0)
    assert torch.allclose(vectors @ query[0], cosine, atol=1e-6)


@pytest.mark.parametrize("method", ["triplet", "pairwise", "pointwise", "probe"])
def test_only_clik_takes_an_appeal_prior(method):
    cfg = clik.get_model_config("clik-tiny-test")
    cfg.method, cfg.appeal_prior = method, True
    with pytest.raises(ValueError, match="appeal_prior is for method 'clik'"):
        cfg.validate()


def test_a_negative_weight_is_refused():
    with pytest.raises(ValueError, match="appeal weight"):
        query_share(-0.5)

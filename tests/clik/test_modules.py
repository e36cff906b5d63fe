"""Shapes and gradient flow through every module of the model."""

import copy

import pytest
import torch
import torch.nn.functional as F

from clik.heads import Aggregation, Attention, MemoryBank, QueryHead, ScoreHead


def test_memory_bank_is_a_fifo_of_unit_vectors():
    bank = MemoryBank(size=4, dim=3)
    assert torch.allclose(bank.bank.norm(dim=-1), torch.ones(4))
    bank.update(torch.tensor([[2.0, 0, 0], [0, 3.0, 0]]))
    assert torch.allclose(bank.bank[:2], torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]))
    bank.update(torch.tensor([[0, 0, 1.0], [1.0, 0, 0], [0, 1.0, 0]]))  # wraps around
    assert int(bank.ptr) == 1
    assert torch.allclose(bank.bank[0], torch.tensor([0, 1.0, 0]))
    assert torch.allclose(bank.bank[2], torch.tensor([0, 0, 1.0]))
    bank.update(torch.randn(9, 3))  # a batch larger than the bank replaces it whole
    assert int(bank.ptr) == 0 and bank.bank.requires_grad is False
    assert "bank" in bank.state_dict() and "ptr" in bank.state_dict()


def test_attention_builds_a_virtual_image_from_the_bank():
    bank = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    topic = torch.tensor([[1.0, 0.0]])
    sharp = Attention(temperature=0.01)(topic, bank)
    assert torch.allclose(sharp, torch.tensor([[1.0, 0.0]]), atol=1e-4)
    flat = Attention(temperature=1.0)(topic, bank)
    w = torch.softmax(torch.tensor([1.0, 0.0]), 0)
    assert torch.allclose(flat, w.unsqueeze(0) @ bank)


@pytest.mark.parametrize("variant", ["group", "virtual", "topic"])
def test_query_variants_shapes_and_gradients(variant):
    torch.manual_seed(0)
    head = QueryHead(dim=8, bank_size=16, variant=variant)
    topic = torch.randn(3, 8, requires_grad=True)
    query = head(topic)
    assert query.shape == (3, 8)
    assert torch.allclose(query.norm(dim=-1), torch.ones(3), atol=1e-5)
    query.sum().backward()
    if variant == "topic":
        assert topic.grad is not None and head.aggregation.linear.weight.grad is None
    elif variant == "virtual":
        assert topic.grad.abs().sum() > 0 and head.aggregation.linear.weight.grad is None
    else:
        assert topic.grad.abs().sum() > 0 and head.aggregation.linear.weight.grad.abs().sum() > 0


def test_group_query_differs_from_topic_query():
    torch.manual_seed(0)
    topic = torch.randn(2, 8)
    group = QueryHead(8, 16, "group")(topic)
    assert not torch.allclose(group, F.normalize(topic, dim=-1), atol=1e-3)


def test_aggregation_and_score_head_shapes():
    agg = Aggregation(8)
    assert agg(torch.randn(5, 8), torch.randn(5, 8)).shape == (5, 8)
    head = ScoreHead(8)
    images = torch.randn(2, 7, 8, requires_grad=True)
    scores = head(torch.randn(2, 8), images)
    assert scores.shape == (2, 7)
    scores.sum().backward()
    assert images.grad.abs().sum() > 0


def test_towers_shapes_and_gradients(pretrained_model):
    # a copy: a forward pass in train mode moves batch-norm statistics, and the session's model
    # must stay the one its bundle was exported from (tests/clik/test_bundle_predictor.py)
    model, tokenizer = copy.deepcopy(pretrained_model[0]), pretrained_model[1]
    model.train()
    batch = tokenizer([{"name": "Men trousers", "kwds": "spandex,pants"}, {"name": "Cropped sweatshirt"}])
    topic = model.encode_topics(**batch)
    images = model.encode_images(torch.randn(3, 3, 224, 224))
    assert topic.shape == (2, 128) and images.shape == (3, 128)
    query = model.ranking_query(topic)
    scores = model.score(query, images.unsqueeze(0).expand(2, -1, -1))
    assert scores.shape == (2, 3)
    scores.sum().backward()
    for name, module in [
        ("text backbone", model.topic.text.backbone),
        ("text proj", model.topic.text.proj),
        ("image backbone", model.image.backbone),
        ("image proj", model.image.proj),
        ("aggregation", model.topic.query_head.aggregation),
    ]:
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        assert grads and any(g.abs().sum() > 0 for g in grads), name


@pytest.mark.parametrize("method", ["triplet", "pairwise", "pointwise"])
def test_baseline_queries_rank_like_their_scores(method, pretrained_model):
    """The serving query of each baseline orders images exactly as its training score does."""
    import clik

    torch.manual_seed(0)
    cfg = clik.get_model_config("clik-tiny-test")
    cfg.method = method
    model = clik.ClikModel(cfg, load_weights=False).eval()
    topic = torch.randn(1, cfg.embed_dim)
    images = torch.randn(1, 6, cfg.embed_dim)
    served = model.score(model.ranking_query(topic), images)[0]
    if method == "triplet":
        trained = -(F.normalize(topic, dim=-1) - F.normalize(images[0], dim=-1)).pow(2).sum(-1)
    else:
        trained = model.topic.score_head(topic, images)[0]
    assert torch.equal(served.argsort(), trained.argsort())

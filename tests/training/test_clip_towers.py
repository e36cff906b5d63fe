"""CLIP-aligned towers (clik/model_configs/clik-clip-vit-b16.json) for users with a model hub.

The hub is unreachable here, so these tests build a tiny twin of the same code path: a CLIP text
transformer (transformers CLIPTextModel, random weights, small sizes, MiniLM's vocabulary) and a
timm ViT whose head becomes the image projection. They check that the projections start as the
models' own (so the towers start where CLIP's zero-shot alignment would be), that a model of them
trains, exports and ranks, and that the named config is well-formed. CLIP's real weights are never
loaded here.
"""

import json
import shutil
from pathlib import Path

import pytest
import torch
from transformers import CLIPTextConfig, CLIPTextModelWithProjection

import clik
from clik.config import ModelConfig, get_model_config
from clik.pretrained import resolve_text_tower


@pytest.fixture(scope="module")
def clip_twin(tmp_path_factory):
    """A local CLIP text model directory (random weights, its tokenizer MiniLM's) and a model config."""
    root = tmp_path_factory.mktemp("clip-twin")
    text_dir = root / "text"
    minilm = resolve_text_tower("minilm")
    config = CLIPTextConfig(
        vocab_size=30522,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=40,
        projection_dim=24,
        eos_token_id=102,
        bos_token_id=101,
        pad_token_id=0,
    )
    torch.manual_seed(0)
    CLIPTextModelWithProjection(config).save_pretrained(text_dir)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(Path(minilm) / name, text_dir / name)
    cfg = {
        "embed_dim": 24,
        "method": "clik",
        "query": "group",
        "memory_bank_size": 8,
        "temperature": 0.07,
        "text": {"name": str(text_dir), "architecture": "clip", "pretrained": True, "pooling": "eos", "max_length": 32},
        "image": {"name": "vit_tiny_patch16_224", "pretrained": "none", "image_size": 224, "init_proj_from_head": True},
    }
    path = root / "clik-clip-twin.json"
    path.write_text(json.dumps(cfg))
    return path, text_dir


def test_projections_start_as_the_models_own(clip_twin):
    path, text_dir = clip_twin
    model = clik.create_model(path).eval()
    reference = CLIPTextModelWithProjection.from_pretrained(text_dir).eval()
    tokenizer = clik.create_tokenizer(model)
    batch = tokenizer.encode_texts(["summer dresses", "black trousers for men"])
    with torch.no_grad():
        ours = model.encode_topics(**batch)
        theirs = reference(**batch).text_embeds
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    # The image projection is the ViT's own head (timm's CLIP image towers keep CLIP's projection there).
    assert model.image.proj.weight.shape == (24, model.image.width)
    assert model.image.backbone.get_classifier().__class__.__name__ == "Identity"


def test_a_clip_twin_trains_exports_and_ranks(clip_twin, shapes_dataset, tmp_path):
    from training.config import load_config
    from training.trainer import train

    path, _ = clip_twin
    cfg = load_config(
        overrides=[
            f"model={path}",
            "epochs=1",
            "tm_batch=4",
            "groups_per_batch=2",
            "images_per_group=6",
            "device=cpu",
            f"cache_dir={tmp_path / 'cache'}",
            "calibration_folds=0",
        ]
    )
    run = train(shapes_dataset, cfg, tmp_path / "run", progress=False)
    model, tokenizer, _ = clik.load_checkpoint(run / "checkpoint")
    assert model.cfg.text.architecture == "clip" and model.cfg.image.init_proj_from_head
    bundle = clik.export_bundle(model, tokenizer, tmp_path / "bundle").path
    side, bundle_tokenizer, _ = clik.load_text_side(bundle)
    image, _ = clik.load_image_side(bundle)
    with torch.no_grad():
        query = side.ranking_query(side.encode(**bundle_tokenizer.encode_texts(["red dress"])))
        vectors = image(torch.randn(5, 3, 224, 224))
    assert query.shape == (1, 24) and vectors.shape == (5, 24)


def test_the_named_clip_config_is_well_formed():
    cfg = get_model_config("clik-clip-vit-b16")
    assert isinstance(cfg, ModelConfig) and cfg.embed_dim == 512  # CLIP ViT-B/16's projection size
    assert cfg.text.architecture == "clip" and cfg.text.pooling == "eos" and cfg.image.init_proj_from_head

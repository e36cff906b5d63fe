"""Export → split bundle → Predictor, end to end on real image files."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

import clik
from clik.image_source import FetchLimits
from tests.support.http_folder import serve_folder
from tests.support.photos import photo


def test_bundle_is_split_and_versioned(bundle, pretrained_model):
    with safe_open(str(bundle.path / "text" / "weights.safetensors"), "pt") as f:
        text_keys = set(f.keys())
    with safe_open(str(bundle.path / "image" / "weights.safetensors"), "pt") as f:
        image_keys = set(f.keys())
    assert any(k.startswith("query_head.memory_bank") for k in text_keys)
    assert any(k.startswith("text.backbone") for k in text_keys)
    assert not any("conv" in k for k in text_keys)
    assert any(k.startswith("backbone.conv_stem") for k in image_keys) and "proj.weight" in image_keys
    assert len(bundle.version) == 16
    for side in ("text", "image"):
        assert json.loads((bundle.path / side / "config.json").read_text())["side"] == side


def test_version_is_a_content_hash(pretrained_model, bundle, tmp_path):
    model, tokenizer = pretrained_model
    again = clik.export_bundle(model, tokenizer, tmp_path / "again")
    assert again.version == bundle.version
    with torch.no_grad():
        model.topic.query_head.aggregation.linear.bias.add_(1e-3)
    try:
        changed = clik.export_bundle(model, tokenizer, tmp_path / "changed")
    finally:
        with torch.no_grad():
            model.topic.query_head.aggregation.linear.bias.sub_(1e-3)
    assert changed.version != bundle.version


def test_the_version_does_not_depend_on_what_the_tokenizer_encoded_last(pretrained_model, tmp_path):
    model, tokenizer = pretrained_model
    first = clik.export_bundle(model.eval(), tokenizer, tmp_path / "first")
    tokenizer([{"name": "Men trousers", "kwds": "spandex,pants"}, {"name": "Cropped sweatshirt"}])
    assert clik.export_bundle(model, tokenizer, tmp_path / "after").version == first.version


def test_sides_load_alone_and_match_the_full_model(bundle, pretrained_model, photo_files):
    model, tokenizer = pretrained_model
    topic = {"name": "Espresso cups", "cat1": "Kitchen", "kwds": "coffee,espresso", "date": "2022-01-01"}
    encoder = clik.TopicEncoder.load(bundle.path, device="cpu")
    assert isinstance(encoder.side, clik.TopicSide)  # no image tower loaded on the text side
    with torch.no_grad():
        expected = model.ranking_query(model.encode_topics(**tokenizer([topic])))[0].numpy()
    np.testing.assert_allclose(encoder.query(topic), expected, atol=1e-5)
    images = clik.ImageEncoder.load(bundle.path, device="cpu")
    assert images.version == encoder.version
    out = images.encode([photo_files["coffee"]])
    with torch.no_grad():
        direct = torch.nn.functional.normalize(
            model.encode_images(images.preprocess(photo_files["coffee"])[None]), dim=-1
        )
    np.testing.assert_allclose(out.vectors[0], direct[0].numpy(), atol=1e-5)


def test_checkpoint_round_trip(pretrained_model, tmp_path):
    model, tokenizer = pretrained_model
    clik.save_checkpoint(model, tokenizer, tmp_path / "ckpt", extra={"step": 7})
    restored, tok2, meta = clik.load_checkpoint(tmp_path / "ckpt")
    assert meta["step"] == 7
    for (name, a), (_, b) in zip(model.state_dict().items(), restored.state_dict().items()):
        assert torch.equal(a, b), name
    assert tok2.text({"name": "x", "date": "2020-01-01"}) == tokenizer.text({"name": "x", "date": "2020-01-01"})


def test_predictor_ranks_every_input_kind_and_reports_bad_ones(bundle, photo_files, tmp_path):
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(photo_files["coffee"].read_bytes()[:200])
    text_file = tmp_path / "notes.jpg"
    text_file.write_text("this is not an image")
    inputs = [
        photo_files["chelsea"],  # path
        str(photo_files["coffee_png"]),  # str path, PNG
        Image.fromarray(photo("rocket")),  # PIL image
        photo("astronaut"),  # numpy array
        corrupt,  # truncated JPEG
        tmp_path / "missing.jpg",  # missing file
        text_file,  # not an image
    ]
    predictor = clik.Predictor.load(bundle.path, device="cpu", batch_size=2)
    result = predictor({"name": "cat"}, inputs, topk=10)
    assert sorted(result.indices) == [0, 1, 2, 3]
    assert set(result.errors) == {4, 5, 6}
    assert "corrupt" in result.errors[4] or "truncated" in result.errors[4]
    assert "not found" in result.errors[5]
    assert "not an image" in result.errors[6]
    assert result.scores == sorted(result.scores, reverse=True)
    assert result.model_version == bundle.version
    top2 = predictor({"name": "cat"}, inputs[:4], topk=2)
    assert top2.indices == result.indices[:2]
    with pytest.raises(ValueError):
        predictor({"name": "cat"}, inputs[:2], topk=0)


@pytest.fixture()
def http_server(photo_files):
    server = serve_folder(photo_files["coffee"].parent)
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_predictor_fetches_urls_and_refuses_loopback_by_default(bundle, http_server):
    url = f"{http_server}/coffee.jpg"
    refusing = clik.Predictor.load(bundle.path, device="cpu")
    result = refusing({"name": "coffee"}, [url])
    assert result.indices == [] and "refused address 127.0.0.1" in result.errors[0]
    allowing = clik.Predictor.load(bundle.path, device="cpu", limits=FetchLimits(allow_private_hosts=True))
    result = allowing({"name": "coffee"}, [url, f"{http_server}/nope.jpg"])
    assert result.indices == [0]
    assert "HTTP 404" in result.errors[1]


def test_checkpoint_save_is_atomic_and_survives_an_interrupted_swap(pretrained_model, tmp_path, monkeypatch):
    import clik.checkpoint as ckpt

    model, tokenizer = pretrained_model
    target = tmp_path / "run" / "checkpoint"
    clik.save_checkpoint(model, tokenizer, target, extra={"step": 1})

    # A save that dies while writing the weights leaves the previous checkpoint as it was.
    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ckpt, "save_model", broken_save)
    with pytest.raises(OSError, match="disk full"):
        clik.save_checkpoint(model, tokenizer, target, extra={"step": 2})
    monkeypatch.undo()
    assert clik.load_checkpoint(target)[2]["step"] == 1
    assert [p.name for p in target.parent.iterdir()] == ["checkpoint"]  # no staging left behind
    # Killed between the two renames: only the previous checkpoint's .old sibling exists.
    target.rename(target.parent / ".checkpoint.old")
    assert clik.load_checkpoint(target)[2]["step"] == 1
    clik.save_checkpoint(model, tokenizer, target, extra={"step": 3})
    assert clik.load_checkpoint(target)[2]["step"] == 3 and not (target.parent / ".checkpoint.old").exists()


def test_each_ddp_rank_draws_its_own_augmentations():
    from training.trainer import augmentation_seed

    seeds = {augmentation_seed(0, rank) for rank in range(4)}
    assert len(seeds) == 4 and augmentation_seed(0, 0) == 0  # a single process trains as before
    assert augmentation_seed(0, 1) == augmentation_seed(0, 1) != augmentation_seed(1, 1)

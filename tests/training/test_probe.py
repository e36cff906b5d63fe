"""The linear probe (`--method probe`): fitted in closed form on a small synthetic catalogue,
better than random there, its penalty chosen on train groups only, and served from its bundle
exactly as evaluation scored it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import clik
from training.config import load_config
from training.evaluate import evaluate
from training.probe import PENALTIES, TARGETS, TOPIC_CODES, log1p_target, rank_target, ridge
from training.trainer import train


COLOURS = {
    "red": (200, 30, 30),
    "blue": (30, 60, 200),
    "green": (30, 160, 60),
    "yellow": (230, 200, 30),
    "black": (20, 20, 20),
    "pink": (240, 120, 180),
}


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory):
    """Discs in six colours (a topic group each); a bigger disc sells more, a disc of another
    colour is off-topic. The signal is plain in pooled features even of the tiny test tower's
    random weights, so a linear probe must find it."""
    import random

    from PIL import Image, ImageDraw

    from training.data.format import Dataset, Exhibition, Product, write_dataset

    root = tmp_path_factory.mktemp("probe") / "data"
    (root / "images").mkdir(parents=True)
    rng = random.Random(0)
    names = list(COLOURS)
    exhibitions = []
    for gi, colour in enumerate(names):
        for e in range(3):
            products = []
            for p in range(10):
                off = p >= 8
                fill = COLOURS[names[(gi + 1 + p) % len(names)] if off else colour]
                radius = rng.randint(6, 30)
                image = Image.new("RGB", (64, 64), (245, 245, 245))
                ImageDraw.Draw(image).ellipse((32 - radius, 32 - radius, 32 + radius, 32 + radius), fill=fill)
                name = f"images/{colour}-{e}-{p}.png"
                image.save(root / name)
                products.append(
                    Product(id=f"{colour}-{e}-{p}", image=name, criteria={"sales": float(radius)}, on_topic=not off)
                )
            exhibitions.append(
                Exhibition(
                    id=f"{colour}-{e}",
                    group=colour,
                    split="test" if gi in (1, 4) else "train",
                    topic={"name": f"{colour} discs", "kwds": colour},
                    products=products,
                )
            )
    write_dataset(Dataset("discs", ["sales"], "sales", "drawn by tests/training/test_probe.py", exhibitions), root)
    return root


def _cfg(tmp_path, **kw):
    base = {"model": "clik-tiny-test", "method": "probe", "cache_dir": str(tmp_path.parent / "cache"), **kw}
    return load_config(overrides=[f"{k}={v}" for k, v in base.items()])


@pytest.fixture(scope="module")
def probe_run(catalogue, tmp_path_factory):
    run = tmp_path_factory.mktemp("probe-run") / "run"
    train(catalogue, _cfg(run), run, progress=False)
    return run


def test_probe_beats_random_and_reports_its_cross_validated_choice(probe_run, catalogue):
    report = json.loads((probe_run / "probe.json").read_text())
    assert report["folds"] >= 2 and report["penalty"] in PENALTIES and report["topic_code"] in TOPIC_CODES
    assert report["target"] in TARGETS
    assert set(report["cv_mrr"]) == {f"{t} r={r}" for t in TARGETS for r in TOPIC_CODES}
    best = report["cv_mrr"][f"{report['target']} r={report['topic_code']}"][str(report["penalty"])]
    assert best == max(v for row in report["cv_mrr"].values() for v in row.values())
    result = evaluate(probe_run, catalogue, bootstrap_samples=0, cache_dir=str(probe_run.parent.parent / "cache"))
    assert result["method"] == "probe" and result["groups"] == 6
    assert result["metrics"]["MRR"] > result["random"]["MRR"] + 0.05
    assert result["appeal_only"]["MRR"] > result["random"]["MRR"]
    assert (probe_run / "checkpoint" / "topic_fit.json").exists()  # calibrated like every method


def test_the_test_split_does_not_change_the_fit(probe_run, catalogue, tmp_path):
    """Penalty and weights come from the train split alone: new test labels, same model."""
    from training.data.format import load_dataset, write_dataset

    dataset = load_dataset(catalogue)
    rng = np.random.default_rng(0)
    for ex in dataset.split("test"):
        for p in ex.products:
            p.criteria["sales"] = float(rng.integers(0, 1000))
    moved = tmp_path / "data"
    for ex in dataset.exhibitions:  # keep the images where they are
        for p in ex.products:
            p.image = dataset.resolve_image(ex, p)
    write_dataset(dataset, moved)
    other = train(moved, _cfg(probe_run, calibration_folds=0), tmp_path / "run", progress=False)
    assert json.loads((other / "probe.json").read_text()) == json.loads((probe_run / "probe.json").read_text())
    a = clik.load_checkpoint(probe_run / "checkpoint")[0].state_dict()
    b = clik.load_checkpoint(other / "checkpoint")[0].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_exported_probe_serves_the_ranking_evaluation_scored(probe_run, catalogue, tmp_path):
    from typer.testing import CliRunner

    from clik_cli.main import app

    result = CliRunner().invoke(app, ["export", str(probe_run), "--out", str(tmp_path / "bundle"), "--no-register"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "bundle" / "bundle.json").read_text())["method"] == "probe"
    predictor = clik.Predictor.load(tmp_path / "bundle")
    evaluated = evaluate(probe_run, catalogue, bootstrap_samples=0, cache_dir=str(probe_run.parent.parent / "cache"))
    group = evaluated["per_group"][0]
    images = [item["image"] for item in group["ranking"]]
    served = predictor(group["topic"], images)
    assert not served.errors
    appeal = dict(zip(served.indices, served.appeal))
    np.testing.assert_allclose(
        [appeal[i] for i in range(len(images))], [item["appeal"] for item in group["ranking"]], atol=2e-3
    )
    assert served.indices[0] == 0  # evaluation's first image is the service's first


def test_rank_target_shares_ties_and_puts_off_topic_last():
    labels = np.array([3.0, 10.0, 3.0, -1.0, 0.0])  # -1: an off-topic product (Exhibition.labels)
    target = rank_target(labels)
    assert target[1] == 1.0 and target[3] == 0.0
    assert target[0] == target[2] and target[4] < target[0]
    assert list(np.argsort(log1p_target(labels))) == list(np.argsort(labels))  # same order, compressed


def test_ridge_matches_the_normal_equations():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 6)), rng.normal(size=40)
    for lam, beta in zip((0.5, 20.0), ridge(x, y, (0.5, 20.0))):
        np.testing.assert_allclose(beta, np.linalg.solve(x.T @ x + lam * np.eye(6), x.T @ y), atol=1e-10)

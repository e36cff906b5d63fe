"""The synthetic catalogue: valid clik-dataset/1, deterministic, labelled synthetic, learnable signal."""

from __future__ import annotations

import hashlib

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from clik_cli.main import app
from training.data.format import load_dataset
from training.data.synthetic import SyntheticOptions, build_synthetic_dataset

SMALL = SyntheticOptions(products_per_group=6, exhibitions_per_group=1, size=8, offtopic=0.25, image_size=64)


def _digest(folder) -> str:
    h = hashlib.sha256()
    for path in sorted((folder / "images").iterdir()):
        h.update(path.name.encode() + path.read_bytes())
    return h.hexdigest()


def test_cli_writes_a_valid_dataset_said_to_be_synthetic(tmp_path):
    result = CliRunner().invoke(
        app,
        [
            "data",
            "synthetic",
            str(tmp_path / "d"),
            "--products-per-group",
            "6",
            "--exhibitions-per-group",
            "1",
            "--size",
            "8",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "SYNTHETIC" in result.output
    dataset = load_dataset(tmp_path / "d")
    assert dataset.meta["synthetic"] is True and "SYNTHETIC" in dataset.source
    assert len(dataset.exhibitions) == 30  # 6 colours x 5 kinds, one exhibition each
    assert {e.split for e in dataset.exhibitions} == {"train", "test"}
    for ex in dataset.exhibitions:
        on = [p for p in ex.products if p.on_topic]
        assert len(ex.products) == 8 and len(on) == 6
        colour, kind = ex.group.split("/")
        assert all(p.id.startswith(f"{colour}-{kind}-") for p in on)
        assert not any(p.id.startswith(f"{colour}-{kind}-") for p in ex.products if not p.on_topic)
        assert colour in ex.topic["kwds"] and colour.capitalize() in ex.topic["name"]
        for p in ex.products:
            with Image.open(dataset.resolve_image(ex, p)) as im:
                assert im.size == (192, 192)


def test_same_seed_same_catalogue_other_seed_other(tmp_path):
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        build_synthetic_dataset(tmp_path / name, SyntheticOptions(**{**SMALL.__dict__, "seed": seed}))
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b") != _digest(tmp_path / "c")


def test_sales_follow_what_the_photo_shows(tmp_path):
    """Plain light backgrounds sell more: the signal a model can learn from pixels alone."""
    dataset = build_synthetic_dataset(tmp_path, SyntheticOptions(products_per_group=12, size=10, image_size=64))
    plain, cluttered = [], []
    seen = set()
    for ex in dataset.exhibitions:
        for p in ex.products:
            if p.id in seen:
                continue
            seen.add(p.id)
            corner = np.asarray(Image.open(dataset.resolve_image(ex, p)).convert("L"))[:3, :3]
            # a plain background is near-white and flat; clutter is darker or mixed
            (plain if corner.min() >= 225 and np.ptp(corner) <= 12 else cluttered).append(p.criteria["sales"])
    assert len(plain) > 20 and len(cluttered) > 20
    assert np.median(plain) > 1.5 * np.median(cluttered)

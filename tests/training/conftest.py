"""A small dataset in the project's format, with images drawn here (no shared data needed)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

COLOURS = {"red": (200, 30, 30), "blue": (30, 60, 200), "green": (30, 160, 60)}
SHAPES = ("circle", "square")


def draw(path: Path, colour: str, shape: str, rng: random.Random) -> None:
    image = Image.new("RGB", (96, 128), (245, 245, 245))
    pen = ImageDraw.Draw(image)
    x, y, r = rng.randint(30, 66), rng.randint(40, 88), rng.randint(18, 28)
    box = (x - r, y - r, x + r, y + r)
    (pen.ellipse if shape == "circle" else pen.rectangle)(box, fill=COLOURS[colour])
    image.save(path, quality=92)


def make_dataset(root: Path, exhibitions_per_group: int = 2, size: int = 8, seed: int = 0) -> Path:
    from training.data.format import Dataset, Exhibition, Product, write_dataset

    rng = random.Random(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    groups = [(c, s) for c in COLOURS for s in SHAPES]
    exhibitions = []
    n = 0
    for gi, (colour, shape) in enumerate(groups):
        split = "test" if gi in (1, 4) else "train"
        for e in range(exhibitions_per_group):
            products = []
            for p in range(size):
                off = p >= size - 2
                c, s = groups[(gi + 1 + p) % len(groups)] if off else (colour, shape)
                name = f"img{n:04d}.jpg"
                n += 1
                draw(root / "images" / name, c, s, rng)
                products.append(
                    Product(
                        id=f"p{n}",
                        image=f"images/{name}",
                        criteria={"sales": float(rng.randint(0, 30))},
                        on_topic=not off,
                    )
                )
            exhibitions.append(
                Exhibition(
                    id=f"{colour}-{shape}-{e}",
                    group=f"{colour}|{shape}",
                    split=split,
                    topic={
                        "name": f"{colour} {shape}s",
                        "desc": "",
                        "date": "2020-09-22",
                        "cat1": "Shapes",
                        "cat2": shape,
                        "cat3": "",
                        "cat4": "",
                        "kwds": f"{colour},{shape}",
                    },
                    products=products,
                )
            )
    write_dataset(
        Dataset(
            name="shapes",
            criteria=["sales"],
            default_criterion="sales",
            source="drawn by the tests",
            exhibitions=exhibitions,
        ),
        root,
    )
    return root


@pytest.fixture(scope="session")
def shapes_dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("shapes"))

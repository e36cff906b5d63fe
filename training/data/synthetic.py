"""A small synthetic catalogue in clik-dataset/1, drawn on the spot: for demos and smoke runs.

It is synthetic and says so (``source`` and ``meta``). Each product is a drawn silhouette (t-shirt,
dress, bag, hat, shoe) in one colour; a topic group is a (colour, kind) pair such as "Red bags".
Engagement ("sales") follows what a shopper would reward in a product photo and the image shows:
a large item on a plain light background, near the centre, sells more than a small, off-centre
item on a cluttered background. So a model has to learn both halves of the task: which images fit
the topic (colour and kind) and which of those are most attractive (the photo's composition).
"""

from __future__ import annotations

import math
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .format import Dataset, Exhibition, Product
from .shape import check_exhibition_shape, on_topic_count, round_half_up

CRITERION = "sales"
DATE = "2026-06-01"

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (200, 30, 40),
    "blue": (30, 70, 200),
    "green": (30, 150, 60),
    "yellow": (235, 200, 30),
    "black": (25, 25, 25),
    "pink": (240, 120, 180),
}
# Silhouettes in a unit box (x right, y down); polygons, plus extra parts for some kinds.
_SHAPES: dict[str, list[tuple[float, float]]] = {
    "t-shirt": [
        (0.3, 0),
        (0.7, 0),
        (1, 0.2),
        (0.85, 0.38),
        (0.75, 0.3),
        (0.75, 1),
        (0.25, 1),
        (0.25, 0.3),
        (0.15, 0.38),
        (0, 0.2),
    ],
    "dress": [(0.36, 0), (0.64, 0), (0.6, 0.35), (0.95, 1), (0.05, 1), (0.4, 0.35)],
    "bag": [(0.08, 0.38), (0.92, 0.38), (0.86, 1), (0.14, 1)],
    "hat": [(0.25, 0.15), (0.75, 0.15), (0.8, 0.75), (0.2, 0.75)],
    "shoe": [(0, 0.5), (0.42, 0.5), (0.52, 0.15), (0.7, 0.15), (0.76, 0.55), (1, 0.68), (1, 0.95), (0, 0.95)],
}
_CATEGORY = {"t-shirt": "Tops", "dress": "Dresses", "bag": "Accessories", "hat": "Accessories", "shoe": "Shoes"}
_PLURAL = {"t-shirt": "t-shirts", "dress": "dresses", "bag": "bags", "hat": "hats", "shoe": "shoes"}
_THEMES = ("for every day", "of the season", "our customers love", "just in", "to wear this weekend")


@dataclass(frozen=True)
class SyntheticOptions:
    products_per_group: int = 24  # distinct products of one (colour, kind)
    exhibitions_per_group: int = 2
    size: int = 20  # products per exhibition, off-topic ones included
    offtopic: float = 0.2
    test_frac: float = 0.2  # share of topic groups in the test split
    image_size: int = 192
    seed: int = 0

    def __post_init__(self) -> None:
        check_exhibition_shape(self.size, self.offtopic, self.test_frac)
        if self.on_per_exhibition > self.products_per_group:
            raise ValueError(
                f"an exhibition needs {self.on_per_exhibition} on-topic products but a group "
                f"has only {self.products_per_group}"
            )
        if self.image_size < 64:
            raise ValueError(f"image_size must be >= 64, got {self.image_size}")

    @property
    def on_per_exhibition(self) -> int:
        return on_topic_count(self.size, self.offtopic)


@dataclass(frozen=True)
class _Look:
    """What the photo shows beyond the product itself; engagement is computed from it."""

    scale: float  # share of the image the item spans
    plain: bool  # plain light background (True) or a cluttered one
    offset: float  # distance of the item's centre from the image centre, share of the size

    def appeal(self) -> float:
        return 2.5 * self.scale + 1.2 * self.plain - 2.0 * self.offset


def build_synthetic_dataset(out_dir: str | Path, options: SyntheticOptions | None = None) -> Dataset:
    """Draw the catalogue's images into ``out_dir/images`` and return the dataset (not yet written)."""
    options = options or SyntheticOptions()
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    groups = [(colour, kind) for kind in _SHAPES for colour in COLOURS]

    products: dict[tuple[str, str], list[Product]] = {}
    for colour, kind in groups:
        rng = _rng(options.seed, f"{colour}/{kind}")
        items = []
        for i in range(options.products_per_group):
            pid = f"{colour}-{kind}-{i:03d}"
            look = _Look(
                scale=float(rng.uniform(0.3, 0.9)), plain=bool(rng.random() < 0.5), offset=float(rng.uniform(0.0, 0.25))
            )
            image = f"images/{pid}.jpg"
            _draw(colour, kind, look, options.image_size, rng).save(out_dir / image, quality=88)
            noise = float(rng.normal(0.0, 0.25))
            sales = int(round(20 * math.exp(look.appeal() + noise)))
            items.append(Product(id=pid, image=image, criteria={CRITERION: float(sales)}))
        products[(colour, kind)] = items

    split_rng = _rng(options.seed, "split")
    n_test = round_half_up(len(groups) * options.test_frac)
    test = {groups[i] for i in split_rng.choice(len(groups), size=n_test, replace=False)}
    exhibitions = []
    for colour, kind in groups:
        rng = _rng(options.seed, f"exhibitions/{colour}/{kind}")
        others = [p for g, items in products.items() if g != (colour, kind) for p in items]
        for n in range(options.exhibitions_per_group):
            on = rng.choice(len(products[(colour, kind)]), size=options.on_per_exhibition, replace=False)
            off = rng.choice(len(others), size=options.size - options.on_per_exhibition, replace=False)
            members = [products[(colour, kind)][i] for i in on]
            members += [Product(others[i].id, others[i].image, dict(others[i].criteria), on_topic=False) for i in off]
            order = rng.permutation(len(members))
            theme = _THEMES[int(rng.integers(len(_THEMES)))]
            exhibitions.append(
                Exhibition(
                    id=f"{colour}-{kind}-{n + 1:02d}",
                    group=f"{colour}/{kind}",
                    split="test" if (colour, kind) in test else "train",
                    topic={
                        "name": f"{colour.capitalize()} {_PLURAL[kind]} {theme}",
                        "date": DATE,
                        "cat1": "Fashion",
                        "cat2": _CATEGORY[kind],
                        "kwds": f"{colour},{kind}",
                    },
                    products=[members[i] for i in order],
                )
            )
    return Dataset(
        name=f"synthetic-{options.seed}",
        criteria=[CRITERION],
        default_criterion=CRITERION,
        source="SYNTHETIC: drawn silhouettes with a made-up sales signal (clik data synthetic); not real data",
        exhibitions=exhibitions,
        meta={"synthetic": True, "options": asdict(options)},
        data_dir=out_dir,
    )


def _draw(colour: str, kind: str, look: _Look, size: int, rng: np.random.Generator) -> Image.Image:
    if look.plain:
        shade = int(rng.integers(235, 256))
        image = Image.new("RGB", (size, size), (shade, shade, shade))
    else:
        image = Image.new("RGB", (size, size), tuple(int(c) for c in rng.integers(60, 200, 3)))
    draw = ImageDraw.Draw(image)
    if not look.plain:  # clutter: random boxes in muted colours behind the item
        for _ in range(12):
            x0, y0 = (int(v) for v in rng.integers(0, size, 2))
            w, h = (int(v) for v in rng.integers(size // 10, size // 3, 2))
            draw.rectangle([x0, y0, x0 + w, y0 + h], fill=tuple(int(c) for c in rng.integers(40, 220, 3)))
    span = look.scale * size
    angle = rng.uniform(0, 2 * math.pi)
    cx = size / 2 + math.cos(angle) * look.offset * size
    cy = size / 2 + math.sin(angle) * look.offset * size
    x0, y0 = cx - span / 2, cy - span / 2
    jitter = rng.integers(-15, 16, 3)
    fill = tuple(int(np.clip(c + j, 0, 255)) for c, j in zip(COLOURS[colour], jitter))
    points = [(x0 + x * span, y0 + y * span) for x, y in _SHAPES[kind]]
    draw.polygon(points, fill=fill, outline=(0, 0, 0))
    if kind == "bag":  # handle
        draw.arc(
            [x0 + 0.3 * span, y0, x0 + 0.7 * span, y0 + 0.7 * span], 180, 360, fill=fill, width=max(2, int(span * 0.06))
        )
    elif kind == "hat":  # brim
        draw.ellipse([x0, y0 + 0.65 * span, x0 + span, y0 + 0.95 * span], fill=fill, outline=(0, 0, 0))
    return image


def _rng(seed: int, key: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(key.encode())])

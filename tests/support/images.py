"""Small real images for tests."""

from __future__ import annotations

import io

import numpy as np


def jpeg_bytes(
    seed: int, size: tuple[int, int] = (64, 48), rectangles: int = 5, rectangle: tuple[int, int] = (20, 16)
) -> bytes:
    """A small real JPEG: a random background with random coloured rectangles (another seed,
    another image)."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    image = Image.new("RGB", size, tuple(int(c) for c in rng.integers(0, 255, 3)))
    draw = ImageDraw.Draw(image)
    for _ in range(rectangles):
        x0, y0 = rng.integers(0, size[0] // 2), rng.integers(0, size[1] // 2)
        draw.rectangle(
            [int(x0), int(y0), int(x0 + rectangle[0]), int(y0 + rectangle[1])],
            fill=tuple(int(c) for c in rng.integers(0, 255, 3)),
        )
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def small_jpeg_bytes(seed: int) -> bytes:
    """The worker tests' images (48x40): kept as they were, so byte-size checks keep their margins."""
    return jpeg_bytes(seed, size=(48, 40), rectangles=4, rectangle=(15, 12))

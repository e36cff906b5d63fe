"""Image preprocessing matching the image tower's normalisation (paper 4.3.2).

Train: resize the short side to the target size, then a random square crop. Eval: resize the
whole image to a square of the target size (no crop, so nothing of the product is cut off).
Implemented on PIL + torch directly: the two steps do not warrant a transform framework.
"""

from __future__ import annotations

import random
from typing import Sequence

import numpy as np
import torch
from PIL import Image


class ImageTransform:
    def __init__(
        self,
        size: int,
        mean: Sequence[float],
        std: Sequence[float],
        train: bool = False,
        rng: random.Random | None = None,
    ):
        self.size = size
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
        self.train = train
        self.rng = rng or random.Random()

    def _geometry(self, image: Image.Image) -> Image.Image:
        if not self.train:
            return image.resize((self.size, self.size), Image.BICUBIC)
        w, h = image.size
        scale = self.size / min(w, h)
        new_w, new_h = max(self.size, round(w * scale)), max(self.size, round(h * scale))
        image = image.resize((new_w, new_h), Image.BICUBIC)
        left = self.rng.randint(0, new_w - self.size)
        top = self.rng.randint(0, new_h - self.size)
        return image.crop((left, top, left + self.size, top + self.size))

    def __call__(self, image: Image.Image) -> torch.Tensor:
        image = self._geometry(image.convert("RGB"))
        array = np.asarray(image, dtype=np.float32) / 255.0
        tensor = torch.from_numpy(array).permute(2, 0, 1)
        return (tensor - self.mean) / self.std


def eval_transform(size: int, mean, std) -> ImageTransform:
    return ImageTransform(size, mean, std, train=False)


def train_transform(size: int, mean, std, seed: int | None = None) -> ImageTransform:
    return ImageTransform(size, mean, std, train=True, rng=random.Random(seed))

"""Real photographs shipped inside scikit-image, for tests that need real images."""

from __future__ import annotations

import numpy as np

# Real photographs shipped inside scikit-image, with the ImageNet classes a correct classifier
# puts in its top 5 (checked by hand against the ImageNet label list).
SAMPLE_PHOTOS = {
    "chelsea": {"Egyptian cat", "tabby, tabby cat", "tiger cat"},
    "coffee": {"espresso", "cup", "coffee mug"},
    "rocket": {"missile", "projectile, missile", "space shuttle"},
}


def photo(name: str) -> np.ndarray:
    from skimage import data

    image = getattr(data, name)()
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    return image[..., :3]

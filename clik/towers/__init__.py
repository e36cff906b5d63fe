"""The two encoders of CLIK's dual-encoder: topic text and product image."""

from .image import ImageTower
from .text import TextTower

__all__ = ["ImageTower", "TextTower"]

"""What every dataset reader checks about the exhibitions it builds (size, off-topic share, test
share) and the one rounding rule they count with."""

from __future__ import annotations

import math


def round_half_up(x: float) -> int:
    """Half-up rounding: Python's round() sends 2.5 to 2 and 3.5 to 4, which reads as a bug here."""
    return int(math.floor(x + 0.5))


def on_topic_count(size: int, offtopic: float) -> int:
    """On-topic products in an exhibition of `size` with an `offtopic` share."""
    return size - round_half_up(size * offtopic)


def check_exhibition_shape(size: int, offtopic: float, test_frac: float) -> None:
    if not 0.0 <= offtopic < 1.0:
        raise ValueError(f"offtopic must be in [0, 1), got {offtopic}")
    if not 0.0 <= test_frac <= 1.0:
        raise ValueError(f"test_frac must be in [0, 1], got {test_frac}")
    if on_topic_count(size, offtopic) < 2:
        raise ValueError(f"size {size} with offtopic {offtopic} leaves fewer than 2 on-topic products")

"""Does a product belong to its exhibition's topic? Scores from vectors the service holds.

Most of an exhibition is on-topic, so an off-topic product is an outlier of its own set: its
image's similarity to the topic embedding (Topic Matching space) is far below the exhibition's
typical one. ``looks_off_topic`` is the uncalibrated rule (robust z-score: median and MAD),
used where no calibration is at hand (the rollout canary).
"""
from __future__ import annotations

import numpy as np

# A product is flagged when its topic similarity lies this many robust standard deviations
# below the exhibition's median.
OUTLIER_Z = 3.0


def robust_z(similarities: np.ndarray) -> np.ndarray:
    """(s - median) / (1.4826 * MAD); 0 for every product when the spread is nil."""
    s = np.asarray(similarities, dtype=np.float64)
    if s.size == 0:
        return s
    median = np.median(s)
    mad = 1.4826 * np.median(np.abs(s - median))
    if mad < 1e-9:
        return np.zeros_like(s)
    return (s - median) / mad


def looks_off_topic(similarities: np.ndarray, z: float = OUTLIER_Z) -> np.ndarray:
    """Boolean mask of products whose topic similarity is an outlier below the exhibition's."""
    return robust_z(similarities) < -z

"""Does a product belong to its exhibition's topic? Scores from vectors the service already
holds, calibrated with the model, and the final ranking score built from them.

Most of an exhibition is on-topic, so an off-topic product is an outlier of its own set. Per
product (``product_features``):
  topic      cosine of its image vector with the topic embedding (Topic Matching space)
  centre     cosine with a robust centre of the exhibition's image vectors (the mean of the
             products nearest the topic, refined once around itself)
  neighbours mean cosine with its 5 nearest other products of the exhibition (against a fixed
             sample of at most 256 of them in large exhibitions)
and each as a robust z-score within the exhibition (median / MAD).

Two uses (``TopicFit``, stored in the bundle and versioned with it):
  topic_fit  P(the product belongs to the topic): a logistic model over the features, fitted on
             labelled exhibitions (``fit``); below ``threshold`` the product is flagged off-topic.
  score      appeal (CLIK's ranking score) + context_weight * (centre + neighbours) / 2, and a
             flagged product below every fitting one: the most appealing product among those
             that look like the exhibition comes first, a flagged one only when all are flagged.
Measured on held-out H&M topic groups (docs/topic_fit.md): the context term takes the top
image's off-topic share from 0.13 to 0 and raises MRR; the flag alone (a gate) does much less.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

FEATURES = ("topic", "topic_z", "centre", "centre_z", "neighbours", "neighbours_z")
# The uncalibrated rule (the rollout canary): this many robust standard deviations below the
# exhibition's median topic similarity.
OUTLIER_Z = 3.0
# Flagged products are pushed below every fitting one (appeal and context are cosines).
_FLAG_PENALTY = 16.0
NEIGHBOURS = 5
NEIGHBOUR_SAMPLE = 256  # products compared with, in larger exhibitions (cost O(n * 256) not O(n^2))


# Cosine differences smaller than this are never "many standard deviations": in a very uniform
# exhibition (near-duplicate packshots) the MAD is tiny and would flag harmless variation.
MIN_SPREAD = 0.02


def robust_z(values: np.ndarray, min_spread: float = 0.0) -> np.ndarray:
    """(x - median) / max(1.4826 * MAD, min_spread); 0 for every product when the spread is nil."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return x
    median = np.median(x)
    mad = max(1.4826 * float(np.median(np.abs(x - median))), min_spread)
    if mad < 1e-9:
        return np.zeros_like(x)
    return (x - median) / mad


def looks_off_topic(similarities: np.ndarray, z: float = OUTLIER_Z) -> np.ndarray:
    """Boolean mask of products whose topic similarity is an outlier below the exhibition's."""
    return robust_z(similarities) < -z


def robust_centre(vectors: np.ndarray, topic_sims: np.ndarray, keep: float = 0.5) -> np.ndarray:
    """Unit centre of the `keep` share of products nearest the topic, then of the `keep` share
    nearest that centre (one refinement: a few off-topic products that happen to lie near the
    topic do not hold it)."""
    n = len(vectors)
    m = max(1, int(round(keep * n)))
    centre = vectors[np.argpartition(-topic_sims, m - 1)[:m]].mean(axis=0)
    centre /= max(float(np.linalg.norm(centre)), 1e-12)
    near = vectors @ centre
    centre = vectors[np.argpartition(-near, m - 1)[:m]].mean(axis=0)
    return centre / max(float(np.linalg.norm(centre)), 1e-12)


def neighbour_similarity(vectors: np.ndarray, k: int = NEIGHBOURS, sample: int = NEIGHBOUR_SAMPLE) -> np.ndarray:
    """Mean cosine of each product with its k most similar other products (compared with an
    evenly spaced sample of `sample` products when there are more)."""
    n = len(vectors)
    if n < 2:
        return np.ones(n)
    ref = np.arange(n) if n <= sample else np.linspace(0, n - 1, sample).astype(np.int64)
    sims = vectors @ vectors[ref].T
    sims[ref, np.arange(len(ref))] = -np.inf  # a product is not its own neighbour
    k = min(k, len(ref) - 1)
    return np.partition(sims, -k, axis=1)[:, -k:].mean(axis=1)


def product_features(vectors: np.ndarray, topic_emb: np.ndarray) -> np.ndarray:
    """(n, len(FEATURES)) features of an exhibition's products (unit rows, unit topic)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if len(vectors) == 0:
        return np.zeros((0, len(FEATURES)))
    topic = vectors @ np.asarray(topic_emb, dtype=np.float32)
    centre = vectors @ robust_centre(vectors, topic)
    neighbours = neighbour_similarity(vectors)
    return np.stack(
        [
            topic,
            robust_z(topic, MIN_SPREAD),
            centre,
            robust_z(centre, MIN_SPREAD),
            neighbours,
            robust_z(neighbours, MIN_SPREAD),
        ],
        axis=1,
    ).astype(np.float64)


def context(features: np.ndarray) -> np.ndarray:
    """How much a product looks like its exhibition: mean of its centre and neighbour cosines."""
    return (features[:, FEATURES.index("centre")] + features[:, FEATURES.index("neighbours")]) / 2


@dataclass(frozen=True)
class TopicFit:
    """P(product belongs to the topic) = sigmoid(features @ weights + bias), flagged below
    `threshold`; the ranking score adds `context_weight` times the context similarity to the
    appeal. Stored in the bundle (text/topic_fit.json) and versioned with it."""

    weights: tuple[float, ...]
    bias: float
    threshold: float = 0.5
    context_weight: float = 3.0
    features: tuple[str, ...] = FEATURES
    fitted_on: dict = field(default_factory=dict)  # what it was fitted on (exhibitions, products, ...)

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        logits = np.asarray(features, dtype=np.float64) @ np.asarray(self.weights) + self.bias
        return 1.0 / (1.0 + np.exp(-np.clip(logits, -40, 40)))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["weights"], d["features"] = list(self.weights), list(self.features)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TopicFit":
        features = tuple(d.get("features", FEATURES))
        if features != FEATURES:
            raise ValueError(f"topic-fit features {features} are not this version's {FEATURES}")
        return cls(
            weights=tuple(float(w) for w in d["weights"]),
            bias=float(d["bias"]),
            threshold=float(d.get("threshold", 0.5)),
            context_weight=float(d.get("context_weight", 3.0)),
            features=features,
            fitted_on=dict(d.get("fitted_on", {})),
        )


# For a bundle without a fitted calibration (exported before it existed, or with no labelled
# data): an outlier 1.5 robust standard deviations below its exhibition on the centre and
# neighbour similarities comes out at p = 0.5.
DEFAULT_FIT = TopicFit(weights=(0.0, 0.0, 0.0, 1.0, 0.0, 1.0), bias=3.0, fitted_on={"prior": True})


def fit(features: list[np.ndarray], on_topic: list[np.ndarray], c: float = 1.0) -> TopicFit:
    """Logistic regression (scikit-learn, L2 with inverse strength `c`) on labelled exhibitions;
    its probabilities are calibrated on these data, so the threshold is 0.5."""
    from sklearn.linear_model import LogisticRegression

    x = np.concatenate(features)
    y = np.concatenate(on_topic).astype(int)
    if len(x) == 0 or y.min() == y.max():
        raise ValueError("topic-fit calibration needs both on- and off-topic products")
    model = LogisticRegression(C=c, max_iter=1000).fit(x, y)
    return TopicFit(
        weights=tuple(float(v) for v in model.coef_[0]),
        bias=float(model.intercept_[0]),
        fitted_on={"exhibitions": len(features), "products": int(len(y)), "off_topic": int((y == 0).sum())},
    )


@dataclass(frozen=True)
class ScoredProducts:
    appeal: np.ndarray  # CLIK's ranking score (cosine with the group query)
    topic_fit: np.ndarray  # P(belongs to the topic)
    off_topic: np.ndarray  # topic_fit below the threshold
    score: np.ndarray  # what orders the ranking

    @property
    def all_flagged(self) -> bool:
        return bool(len(self.off_topic) and self.off_topic.all())


def score_products(
    appeal: np.ndarray, features: np.ndarray, fit: TopicFit, threshold: float | None = None
) -> ScoredProducts:
    """The service's ranking of one exhibition (the evaluation uses the same function)."""
    appeal = np.asarray(appeal, dtype=np.float64)
    p = fit.probabilities(features)
    flagged = p < (fit.threshold if threshold is None else threshold)
    score = appeal + fit.context_weight * context(features) - _FLAG_PENALTY * flagged
    return ScoredProducts(appeal=appeal, topic_fit=p, off_topic=flagged, score=score)

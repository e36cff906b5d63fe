"""The arithmetic of serving an experiment: which arm a unit belongs to, and what the exploring
arm shows with which probability. Pure functions (numpy only), so tests and the offline replay
use exactly what the API serves with.

Assignment: ``blake2b(salt | experiment | unit)`` read as a number in [0, 1) and cut at the
arms' cumulative shares. The same unit lands in the same arm in every API process and after a
restart; a new salt reshuffles everyone.

Exploration: Thompson sampling over the model's top candidates. Each candidate's click
probability gets a Beta prior centred on ``sigmoid(logit(prior_ctr) + prior_scale * z)``, z its
CLIK score standardised among the candidates, weighing ``prior_strength`` impressions; the
posterior adds the candidate's clicks and impressions from the event counters. Serving is one
draw from each posterior and the argmax; the propensity logged with it is the share of
``draws`` posterior draws (the served one among them) that the served candidate wins: the
probability of the choice, which inverse-propensity estimates divide by.
"""

from __future__ import annotations

import hashlib

import numpy as np

from indexer.experiments import Arm, Experiment

PROPENSITY_DRAWS = 1000


def bucket(experiment: Experiment, unit: str) -> float:
    """The unit's place in [0, 1) for this experiment (uniform over units)."""
    digest = hashlib.blake2b(f"{experiment.salt}|{experiment.experiment_id}|{unit}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def assign(experiment: Experiment, unit: str) -> tuple[Arm, float]:
    """(arm, its traffic share): the same unit always gets the same arm."""
    u = bucket(experiment, unit)
    previous = 0.0
    for arm, edge in zip(experiment.arms, experiment.cumulative):
        if u < edge or edge == 1.0:  # the last edge is exactly 1 and u < 1
            return arm, edge - previous
        previous = edge
    raise AssertionError("cumulative shares end at 1")


def beta_prior(scores: np.ndarray, arm: Arm) -> tuple[np.ndarray, np.ndarray]:
    """(alpha, beta) per candidate from CLIK's scores (best first or any order)."""
    s = np.asarray(scores, dtype=np.float64)
    spread = float(s.std())
    z = (s - s.mean()) / spread if spread > 1e-12 else np.zeros_like(s)
    logit = np.log(arm.prior_ctr / (1.0 - arm.prior_ctr)) + arm.prior_scale * z
    mean = 1.0 / (1.0 + np.exp(-logit))
    # +0.5 keeps both parameters away from 0 when the prior is weak
    return arm.prior_strength * mean + 0.5, arm.prior_strength * (1.0 - mean) + 0.5


def thompson(
    scores: np.ndarray,
    clicks: np.ndarray,
    impressions: np.ndarray,
    arm: Arm,
    rng: np.random.Generator,
    draws: int = PROPENSITY_DRAWS,
) -> tuple[int, float]:
    """(index of the candidate to show, the probability that it is shown)."""
    alpha, beta = beta_prior(scores, arm)
    clicks = np.minimum(np.asarray(clicks, dtype=np.float64), impressions)
    alpha = alpha + clicks
    beta = beta + np.maximum(np.asarray(impressions, dtype=np.float64) - clicks, 0.0)
    theta = rng.beta(alpha, beta, size=(draws, len(alpha)))
    winners = theta.argmax(axis=1)
    chosen = int(winners[0])  # the draw that serves is one of those that estimate its probability
    return chosen, float(np.count_nonzero(winners == chosen)) / draws


def posterior_means(scores: np.ndarray, clicks: np.ndarray, impressions: np.ndarray, arm: Arm) -> np.ndarray:
    alpha, beta = beta_prior(scores, arm)
    clicks = np.minimum(np.asarray(clicks, dtype=np.float64), impressions)
    return (alpha + clicks) / (alpha + beta + np.asarray(impressions, dtype=np.float64))

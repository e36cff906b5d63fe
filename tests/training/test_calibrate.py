"""The topic-fit calibration picks its context weight and threshold from held-out exhibitions:
known cases where the context term helps and where it hurts, and the cross-fitting folds."""

from __future__ import annotations

import numpy as np

from training.calibrate import MIN_HOLDOUT_GROUPS, fit_calibration, group_folds
from training.evaluate import GroupData

DIM = 16


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _group(rng, appealing_off_topic: bool, n_on: int = 16, n_off: int = 4) -> GroupData:
    """On-topic products around one direction, off-topic ones elsewhere. The query either
    favours an off-topic product (the context term must overrule it) or an atypical on-topic one
    (the context term must stay out of its way)."""
    centre, other = _unit(rng.standard_normal(DIM)), _unit(rng.standard_normal(DIM))
    on = _unit(centre + 0.25 * rng.standard_normal((n_on, DIM)))
    off = _unit(other + 0.25 * rng.standard_normal((n_off, DIM)))
    vectors = np.vstack([on, off]).astype(np.float32)
    labels = np.concatenate([rng.random(n_on) + 1.0, np.zeros(n_off)])
    if appealing_off_topic:
        query = off[0]
    else:
        best = int(np.argmax(labels))
        vectors[best] = _unit(centre + 0.9 * _unit(rng.standard_normal(DIM)))  # the best looks unusual
        query = vectors[best]
    return GroupData(
        exhibition_id=str(rng.integers(1e9)),
        vectors=vectors,
        topic_emb=centre.astype(np.float32),
        query=query.astype(np.float32),
        labels=labels,
        on_topic=np.array([True] * n_on + [False] * n_off),
        images=[],
        product_ids=[],
    )


def test_context_weight_follows_what_the_held_out_exhibitions_reward():
    rng = np.random.default_rng(0)
    helps = fit_calibration([_group(rng, appealing_off_topic=True) for _ in range(30)])
    assert helps.context_weight > 0  # an off-topic product would otherwise win on appeal
    hurts = fit_calibration([_group(rng, appealing_off_topic=False) for _ in range(30)])
    assert hurts.context_weight < helps.context_weight
    assert "objective" in helps.fitted_on and helps.threshold in (0.5, 0.3, 0.2, 0.1, 0.05)


def test_folds_cover_every_train_group_once(tmp_path):
    from training.data.synthetic import SyntheticOptions, build_synthetic_dataset
    from training.data.format import load_dataset, write_dataset

    write_dataset(
        build_synthetic_dataset(
            tmp_path / "d", SyntheticOptions(products_per_group=8, exhibitions_per_group=1, size=10)
        ),
        tmp_path / "d",
    )
    groups = {e.group for e in load_dataset(tmp_path / "d").split("train")}
    folds = group_folds(tmp_path / "d", 3, seed=0)
    assert len(folds) == 3 and set().union(*folds) == groups and sum(map(len, folds)) == len(groups)
    assert folds == group_folds(tmp_path / "d", 3, seed=0)  # deterministic
    assert group_folds(tmp_path / "d", len(groups) // MIN_HOLDOUT_GROUPS + 1, seed=0) == []  # too few per fold

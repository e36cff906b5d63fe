"""Topic-fit calibration of a trained run: the logistic model of clik.topic_fit fitted on
labelled exhibitions the run's model has encoded, written beside the checkpoint
(RUN/checkpoint/topic_fit.json) so that `clik export` puts it in the bundle.

Fitted on the train split (the dataset format has train and test only). Train topics were
seen by Topic Matching, so their topic similarities run higher than those of new topics; the
within-exhibition features (robust z-scores, centre, neighbours) carry most of the weight and
move less. The threshold stays 0.5; `CLIK_TOPIC_FIT_THRESHOLD` overrides it when serving.
"""
from __future__ import annotations

import json
from pathlib import Path

from clik.topic_fit import DEFAULT_FIT, TopicFit, fit, product_features

from .evaluate import load_groups

CALIBRATION_FILE = "topic_fit.json"


def checkpoint_dir(run_dir: str | Path) -> Path:
    run_dir = Path(run_dir)
    return run_dir / "checkpoint" if (run_dir / "checkpoint").is_dir() else run_dir


def calibrate(run_dir: str | Path, data_dir: str | Path, cache_dir: str | None = None,
              device: str | None = None) -> TopicFit:
    """Fit, write and return the run's topic-fit calibration (the prior when the data have no
    off-topic products to learn from)."""
    split = "train"
    loaded = load_groups(run_dir, data_dir, split=split, cache_dir=cache_dir, device=device)
    groups = [g for g in loaded.groups if len(g.on_topic) >= 2]
    try:
        calibration = fit([product_features(g.vectors, g.topic_emb) for g in groups], [g.on_topic for g in groups])
        calibration = TopicFit(**{**calibration.__dict__, "fitted_on": {**calibration.fitted_on, "split": split}})
    except ValueError:
        calibration = DEFAULT_FIT
    path = checkpoint_dir(run_dir) / CALIBRATION_FILE
    path.write_text(json.dumps(calibration.to_dict(), indent=1) + "\n")
    return calibration


def read_calibration(run_dir: str | Path) -> TopicFit | None:
    path = checkpoint_dir(run_dir) / CALIBRATION_FILE
    return TopicFit.from_dict(json.loads(path.read_text())) if path.exists() else None

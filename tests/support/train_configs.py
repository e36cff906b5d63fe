"""A training config small enough for the drawn test datasets (tests/training/conftest.py)."""

from __future__ import annotations

from pathlib import Path

from training.config import TrainConfig, load_config


def small_config(tmp_path: Path, **overrides) -> TrainConfig:
    """A few CPU steps over a handful of groups, features cached under `tmp_path`; any option
    overridable by name, as on the command line."""
    base = dict(
        epochs=3,
        tm_batch=8,
        memory_bank_size=16,
        groups_per_batch=2,
        images_per_group=6,
        log_every=1,
        device="cpu",
        cache_dir=str(tmp_path / "cache"),
        lr=1e-3,
    )
    base.update(overrides)
    return load_config(overrides=[f"{k}={v}" for k, v in base.items()])

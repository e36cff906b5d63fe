"""Rollouts through the documented commands on the embedded store, with real bundles and real
images: `clik index FOLDER` then `clik models activate / rollback`, in separate command runs that
share nothing but the store (as a user running them one after another)."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from clik_cli.main import app
from indexer.config import open_store
from tests.support.bundles import tiny_bundle
from tests.support.images import small_jpeg_bytes as jpeg_bytes

runner = CliRunner()
N = 6


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("rollout-models")
    return [tiny_bundle(root / f"v{i}", i) for i in (1, 2, 3)]


@pytest.fixture()
def catalogue(tmp_path, monkeypatch, bundles):
    """A store loaded the way a user does it: `clik index FOLDER --bundle v1` (the command may
    read its own folder), then exhibitions. Later commands get no CLIK_FILE_ROOTS."""
    import torch

    for key in ("CLIK_FILE_ROOTS", "CLIK_ROLLOUT_CONFIRM", "CLIK_ROLLOUT_MIN_COVERAGE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("CLIK_STORE_URL", str(tmp_path / "store"))
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    images = tmp_path / "images"
    images.mkdir()
    for i in range(N):
        (images / f"p{i}.jpg").write_bytes(jpeg_bytes(200 + i))
    saved = dict(os.environ)
    result = runner.invoke(app, ["index", str(images), "--bundle", str(bundles[0].path)])
    assert result.exit_code == 0, result.output
    with open_store(str(tmp_path / "store")) as store:
        store.put_exhibition("e1", {"name": "summer shirts"}, [f"p{i}" for i in range(N)])
        store.put_exhibition("e2", {"name": "winter coats"}, [f"p{i}" for i in range(0, N, 2)])
    yield tmp_path, images
    os.environ.clear()
    os.environ.update(saved)
    torch.set_num_threads(threads)


def _store(tmp):
    return open_store(str(tmp / "store"))


def _scored(store, version: str, eid: str = "e1") -> int:
    dim = store.get_version(version).dim
    return store.rank(eid, np.ones(dim, np.float32), k=N).total_scored


def test_a_later_command_reads_the_catalogue_folder_and_rolls_forward(catalogue, bundles):
    """The issue's scenario: the roots the first command used must be known to the next one."""
    tmp, _ = catalogue
    v1, v2 = bundles[0].version, bundles[1].version
    result = runner.invoke(app, ["models", "activate", str(bundles[1].path)])
    assert result.exit_code == 0, result.output
    assert f"{N} images encoded, 0 skipped" in result.output
    with _store(tmp) as store:
        assert store.active_version().name == v2
        assert _scored(store, v2) == N
        assert _scored(store, v1) == N  # the previous version still has every vector


def test_a_rollout_that_cannot_read_the_images_is_refused_and_changes_nothing(catalogue, bundles):
    tmp, images = catalogue
    v1, v3 = bundles[0].version, bundles[2].version
    shutil.move(images, tmp / "moved")  # the catalogue's files are gone from where they were
    result = runner.invoke(app, ["models", "activate", str(bundles[2].path)])
    assert result.exit_code == 1, result.output
    out = result.output
    assert f"new version covers 0 of {N} products, the active one {N}" in out
    assert f"{N} images could not be re-encoded" in out
    assert f"{N} × file not found: …" in out  # grouped by kind, with one example
    assert "active version and its vectors are unchanged" in out
    with _store(tmp) as store:
        assert store.active_version().name == v1
        assert _scored(store, v1) == N and _scored(store, v1, "e2") == N // 2
    listed = {r["version"]: r for r in json.loads(runner.invoke(app, ["models", "list", "--json"]).output)}
    assert listed[v3]["reindex"]["state"] == "refused" and not listed[v3]["active"]

    # Fixed (files back): the same command goes through, retrying the skipped images.
    shutil.move(tmp / "moved", images)
    result = runner.invoke(app, ["models", "activate", str(bundles[2].path)])
    assert result.exit_code == 0, result.output
    with _store(tmp) as store:
        assert store.active_version().name == v3 and _scored(store, v3) == N


def test_rollback_switches_back_at_once_and_forward_again(catalogue, bundles):
    tmp, _ = catalogue
    v1, v2 = bundles[0].version, bundles[1].version
    assert runner.invoke(app, ["models", "activate", str(bundles[1].path)]).exit_code == 0
    result = runner.invoke(app, ["models", "rollback"])
    assert result.exit_code == 0, result.output
    assert f"rolled back from {v2[:16]} to {v1[:16]}" in result.output
    assert "0 images encoded" in result.output  # its vectors were still there
    with _store(tmp) as store:
        assert store.active_version().name == v1 and _scored(store, v1) == N
        assert _scored(store, v2) == N  # the version rolled back from is kept too
    result = runner.invoke(app, ["models", "activate", v2[:12]])  # forward again: a new job, instant
    assert result.exit_code == 0, result.output
    assert "0 images encoded" in result.output
    with _store(tmp) as store:
        assert store.active_version().name == v2


def test_confirmation_is_asked_after_the_canary_report(catalogue, bundles, monkeypatch):
    tmp, _ = catalogue
    v1, v2 = bundles[0].version, bundles[1].version
    monkeypatch.setenv("CLIK_ROLLOUT_CONFIRM", "true")
    result = runner.invoke(app, ["models", "activate", str(bundles[1].path)], input="n\n")
    assert result.exit_code == 1, result.output
    assert "canary on 2 exhibitions: top-1 unchanged in" in result.output
    assert "mean rank correlation" in result.output and "switch the active version" in result.output
    with _store(tmp) as store:
        assert store.active_version().name == v1
    result = runner.invoke(app, ["models", "activate", str(bundles[1].path)], input="y\n")
    assert result.exit_code == 0, result.output
    with _store(tmp) as store:
        assert store.active_version().name == v2


def test_watch_leaves_a_refused_bundle_alone(catalogue, bundles):
    tmp, images = catalogue
    models = tmp / "watched"
    models.mkdir()
    shutil.copytree(bundles[1].path, models / "v2")
    shutil.move(images, tmp / "moved")
    result = runner.invoke(app, ["models", "watch", str(models), "--once"])
    assert result.exit_code == 0, result.output
    assert "not rolled out" in result.output and "file not found" in result.output
    again = runner.invoke(app, ["models", "watch", str(models), "--once"])
    assert "new bundle" not in again.output  # refused once: not retried every interval
    with _store(tmp) as store:
        assert store.active_version().name == bundles[0].version

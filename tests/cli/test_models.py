"""`clik models` and `clik config` on the embedded store, with real bundles and real images."""

from __future__ import annotations

import json
import os

import pytest
from typer.testing import CliRunner

from clik_cli.main import app
from indexer.config import open_store
from tests.support.bundles import tiny_bundle
from tests.support.images import small_jpeg_bytes as jpeg_bytes
from worker.encode import EncoderCache, encode_products
from worker.settings import WorkerSettings

runner = CliRunner()


@pytest.fixture()
def env(tmp_path, monkeypatch):
    images = tmp_path / "images"
    images.mkdir()
    for i in range(5):
        (images / f"p{i}.jpg").write_bytes(jpeg_bytes(100 + i))
    monkeypatch.setenv("CLIK_STORE_URL", str(tmp_path / "store"))
    monkeypatch.setenv("CLIK_FILE_ROOTS", json.dumps([str(images)]))
    monkeypatch.chdir(tmp_path)  # no ./clik.toml of the developer's leaks in
    return tmp_path, images


@pytest.fixture(autouse=True)
def _restore_environ():
    """The CLI exports a config file's settings into os.environ (by design, for the processes it
    starts); tests must not leak them into each other."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def _run(*args: str):
    result = runner.invoke(app, list(args))
    return result


def test_activate_reindexes_switches_and_keeps_the_old_version(env):
    tmp, images = env
    v1, v2 = tiny_bundle(tmp / "models" / "v1", 1), tiny_bundle(tmp / "models" / "v2", 2)
    assert v1.version != v2.version

    result = _run("models", "activate", str(v1.path))
    assert result.exit_code == 0, result.output
    store = open_store(str(tmp / "store"))
    assert store.active_version().name == v1.version
    for i in range(5):
        store.put_product(f"p{i}", str(images / f"p{i}.jpg"))
    store.put_exhibition("e1", {"name": "shirts"}, [f"p{i}" for i in range(5)])
    report = encode_products(
        store, [f"p{i}" for i in range(5)], EncoderCache("cpu", 8), WorkerSettings().fetch_limits()
    )
    assert len(report.encoded) == 5 and not report.failed

    result = _run("models", "activate", str(v2.path))
    assert result.exit_code == 0, result.output
    assert "5 images encoded" in result.output and "covers 5/5 products (100%)" in result.output
    assert "canary on 1 exhibitions" in result.output and "kept" in result.output
    store = open_store(str(tmp / "store"))
    assert store.active_version().name == v2.version
    # v1 and its vectors stay for a rollback
    assert sorted(v.name for v in store.list_versions()) == sorted([v1.version, v2.version])
    ranking = store.rank("e1", [1.0] + [0.0] * (v2.embed_dim - 1), k=5)
    assert ranking.model_version == v2.version and ranking.total_scored == 5 and not ranking.pending

    listed = {r["version"]: r for r in json.loads(_run("models", "list", "--json").output)}
    assert listed[v2.version]["active"] and listed[v2.version]["reindex"]["done"] == 5
    assert listed[v2.version]["coverage"] == {"products": 5, "with_vectors": 5, "share": 1.0}
    assert listed[v1.version]["coverage"]["with_vectors"] == 5 and not listed[v1.version]["active"]

    again = _run("models", "activate", v2.version[:10])  # idempotent, by prefix: nothing re-encoded
    assert again.exit_code == 0, again.output
    listed = {r["version"]: r for r in json.loads(_run("models", "list", "--json").output)}
    assert listed[v2.version]["reindex"]["done"] == 5


def test_drop_refuses_the_active_version_and_unknown_names(env):
    tmp, _ = env
    v1 = tiny_bundle(tmp / "models" / "v1", 1)
    assert _run("models", "activate", str(v1.path)).exit_code == 0
    result = _run("models", "drop", v1.version)
    assert result.exit_code == 1 and "active version" in result.output
    result = _run("models", "drop", "feedbeef")
    assert result.exit_code == 2 and "no model version" in result.output
    result = _run("models", "activate", str(tmp))  # a folder that is no bundle
    assert result.exit_code == 2 and "not a CLIK bundle" in result.output


def test_watch_rolls_out_the_newest_new_bundle(env):
    tmp, _ = env
    models = tmp / "models"
    v1 = tiny_bundle(models / "a", 1)
    result = _run("models", "watch", str(models), "--once")
    assert result.exit_code == 0, result.output
    assert open_store(str(tmp / "store")).active_version().name == v1.version
    assert "new bundle" not in _run("models", "watch", str(models), "--once").output  # nothing new
    (models / "half-written").mkdir()  # not a bundle: ignored
    v2 = tiny_bundle(models / "b", 2)
    result = _run("models", "watch", str(models), "--once")
    assert result.exit_code == 0, result.output
    store = open_store(str(tmp / "store"))
    assert store.active_version().name == v2.version
    assert sorted(v.name for v in store.list_versions()) == sorted([v1.version, v2.version])  # v1 kept


def test_config_file_environment_and_masking(env, monkeypatch):
    tmp, _ = env
    (tmp / "clik.toml").write_text('store_prefix = "file:"\napi_keys = ["a-long-secret-key"]\nbatch_size = 7\n')
    monkeypatch.delenv("CLIK_STORE_PREFIX", raising=False)
    monkeypatch.setenv("CLIK_BATCH_SIZE", "9")  # the environment beats the file
    result = _run("config")
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["cli"]["store_prefix"] == "file:" and out["worker"]["batch_size"] == 9
    assert out["api"]["api_keys"] == ["***ey"] and "a-long-secret-key" not in result.output
    (tmp / "bad.toml").write_text("store_prefix = [unclosed")
    result = _run("--config", str(tmp / "bad.toml"), "config")
    assert result.exit_code == 2 and "not valid TOML" in result.output


def test_export_registers_the_bundle_then_activate_switches(env):
    tmp, _ = env
    result = _run("export", "--pretrained", "clik-tiny-test", "--out", str(tmp / "models" / "fresh"))
    assert result.exit_code == 0, result.output
    assert "registered version" in result.output
    store = open_store(str(tmp / "store"))
    [version] = store.list_versions()
    assert not version.active and version.bundle_uri == str((tmp / "models" / "fresh").resolve())
    assert _run("models", "activate", version.name[:12]).exit_code == 0
    assert open_store(str(tmp / "store")).active_version().name == version.name


def test_drop_previous_drops_the_old_version_and_its_vectors(env):
    tmp, images = env
    v1, v2 = tiny_bundle(tmp / "models" / "v1", 1), tiny_bundle(tmp / "models" / "v2", 2)
    assert _run("models", "activate", str(v1.path)).exit_code == 0
    store = open_store(str(tmp / "store"))
    store.put_product("p0", str(images / "p0.jpg"))
    encode_products(store, ["p0"], EncoderCache("cpu", 8), WorkerSettings().fetch_limits())
    result = _run("models", "activate", str(v2.path), "--drop-previous")
    assert result.exit_code == 0, result.output
    assert "dropped" in result.output
    store = open_store(str(tmp / "store"))
    assert store.active_version().name == v2.version
    assert [v.name for v in store.list_versions()] == [v2.version]
    assert store.has_vector(v2.version, store.get_product("p0").image_hash)

"""`clik index` (embedded store, real photos, in-process; and --celery onto a real Redis broker)
and `clik worker` (a real worker process started through the command)."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import redis
from PIL import Image
from typer.testing import CliRunner

from clik.image_source import content_hash
from clik_cli.commands import index as index_cmd
from clik_cli.commands import worker as worker_cmd
from indexer.config import open_store
from indexer.records import ProductStatus
from tests.support.photos import photo
from tests.support.services import service_missing
from tests.support.bundles import tiny_bundle
from tests.support.images import small_jpeg_bytes as jpeg_bytes

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]
BROKER_URL = "redis://127.0.0.1:6379/13"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return tiny_bundle(tmp_path_factory.mktemp("ibundle") / "b")


@pytest.fixture()
def env(tmp_path, monkeypatch):
    import torch

    for key in ("CLIK_STORE_URL", "CLIK_FILE_ROOTS", "CLIK_BROKER_URL", "CLIK_QUEUE", "CLIK_TORCH_THREADS"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    yield tmp_path
    torch.set_num_threads(threads)  # the command sets the process's torch threads


def write_photos(folder: Path) -> dict[str, Path]:
    (folder / "women" / "tops").mkdir(parents=True)
    (folder / "men").mkdir()
    files = {
        "women/tops/cat": folder / "women" / "tops" / "cat.jpg",
        "men/coffee": folder / "men" / "coffee.png",
        "rocket": folder / "rocket.jpg",
    }
    for name, path in zip(("chelsea", "coffee", "rocket"), files.values()):
        Image.fromarray(photo(name)).save(path)
    (folder / "men" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg" * 20)
    (folder / "notes.txt").write_text("not an image, not picked up")
    return files


def test_folder_is_registered_and_encoded_in_process(env, bundle):
    files = write_photos(env / "catalogue")
    result = runner.invoke(
        index_cmd.app,
        [str(env / "catalogue"), "--store", str(env / "store"), "--bundle", str(bundle.path), "--batch-size", "2"],
    )
    assert result.exit_code == 0, result.output
    assert "encoded 3 of 4 products" in result.output and "failed 1" in result.output
    assert "men/broken" in result.output and "corrupt image" in result.output
    store = open_store(str(env / "store"))
    try:
        assert store.active_version().name == bundle.version  # the bundle was registered and activated
        for pid, path in files.items():
            product = store.get_product(pid)
            assert product.status is ProductStatus.ENCODED and product.image_hash == content_hash(path.read_bytes())
            assert store.has_vector(bundle.version, product.image_hash)
        broken = store.get_product("men/broken")
        assert broken.status is ProductStatus.FAILED and "corrupt image" in broken.error
    finally:
        store.close()


def test_csv_and_jsonl_use_the_active_version_and_report_each_failure(env, bundle):
    images = env / "imgs"
    images.mkdir()
    for i in range(3):
        (images / f"{i}.jpg").write_bytes(jpeg_bytes(i))
    store_dir = str(env / "store")
    first = runner.invoke(index_cmd.app, [str(images), "--store", store_dir, "--bundle", str(bundle.path)])
    assert first.exit_code == 0, first.output
    (env / "products.csv").write_text(
        "product_id,image_url,colour\n"
        "sku-1,imgs/0.jpg,red\n"  # relative to the CSV's folder
        f"sku-2,{images / '1.jpg'},blue\n"
        "sku-3,http://127.0.0.1:9/x.jpg,green\n"
        "sku-4,imgs/nope.jpg,\n"
        ",imgs/2.jpg,\n"
    )
    result = runner.invoke(index_cmd.app, [str(env / "products.csv"), "--store", store_dir])  # no --bundle
    assert result.exit_code == 0, result.output
    assert "encoded 2 of 4 products" in result.output and "failed 3" in result.output
    assert "refused address 127.0.0.1" in result.output and "file not found" in result.output
    assert "products.csv:6: needs both product_id and image_url" in result.output
    (env / "products.jsonl").write_text(
        json.dumps({"product_id": "j-1", "image_url": "imgs/2.jpg"}) + "\n" + "{broken json\n" + "[1, 2]\n"
    )
    result = runner.invoke(index_cmd.app, [str(env / "products.jsonl"), "--store", store_dir])
    assert result.exit_code == 0, result.output
    assert "encoded 1 of 1" in result.output and "products.jsonl:2: not JSON" in result.output
    store = open_store(store_dir)
    try:
        assert store.get_product("sku-1").image_hash == store.get_product("0").image_hash
        assert store.get_product("j-1").status is ProductStatus.ENCODED
        assert "refused address" in store.get_product("sku-3").error
        assert store.get_product("sku-4").status is ProductStatus.FAILED
    finally:
        store.close()


def test_bad_input_gets_a_clear_error_and_a_non_zero_exit(env, bundle):
    store_dir = str(env / "store")
    (env / "bad.csv").write_text("id,url\na,b.jpg\n")
    result = runner.invoke(index_cmd.app, [str(env / "bad.csv"), "--store", store_dir, "--bundle", str(bundle.path)])
    assert result.exit_code == 2 and "missing column(s) image_url, product_id" in result.output
    (env / "list.txt").write_text("a.jpg\n")
    result = runner.invoke(index_cmd.app, [str(env / "list.txt"), "--store", store_dir])
    assert result.exit_code == 2 and ".csv or a .jsonl" in result.output
    (env / "empty").mkdir()
    result = runner.invoke(index_cmd.app, [str(env / "empty"), "--store", store_dir, "--bundle", str(bundle.path)])
    assert result.exit_code == 2 and "no products" in result.output
    (env / "junk").mkdir()
    (env / "junk" / "a.jpg").write_bytes(b"not an image at all" * 10)
    result = runner.invoke(index_cmd.app, [str(env / "junk"), "--store", str(env / "fresh")])
    assert result.exit_code == 2 and "no active model version" in result.output
    result = runner.invoke(index_cmd.app, [str(env / "junk"), "--store", store_dir, "--bundle", str(bundle.path)])
    assert result.exit_code == 1 and "encoded 0 of 1" in result.output  # nothing could be indexed
    assert "not an image" in result.output


@pytest.mark.redis
def test_celery_mode_enqueues_chunks_on_the_broker(env, bundle, monkeypatch):
    try:
        redis.Redis.from_url(BROKER_URL, socket_connect_timeout=1).ping()
    except redis.RedisError as exc:
        service_missing(f"Redis unreachable ({exc})")
    write_photos(env / "catalogue")
    queue = f"clik-test-{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("CLIK_BROKER_URL", BROKER_URL)
    monkeypatch.setenv("CLIK_QUEUE", queue)
    broker = redis.Redis.from_url(BROKER_URL)
    try:
        result = runner.invoke(
            index_cmd.app,
            [
                str(env / "catalogue"),
                "--store",
                str(env / "store"),
                "--bundle",
                str(bundle.path),
                "--celery",
                "--chunk",
                "3",
            ],
        )
        assert result.exit_code == 0, result.output
        assert "queued 4 products" in result.output
        messages = [json.loads(m) for m in broker.lrange(queue, 0, -1)]
        assert len(messages) == 2  # 4 products in chunks of 3
        args = [json.loads(base64.b64decode(m["body"]))[0][0] for m in reversed(messages)]
        assert sorted(sum(args, [])) == ["men/broken", "men/coffee", "rocket", "women/tops/cat"]
        assert all(m["headers"]["task"] == "clik.encode_products" for m in messages)
    finally:
        broker.delete(queue)
    store = open_store(str(env / "store"))
    try:
        assert store.get_product("rocket").status is ProductStatus.PENDING  # registered, left to workers
    finally:
        store.close()


@pytest.mark.redis
def test_worker_command_starts_a_real_worker(env, tmp_path):
    try:
        redis.Redis.from_url(BROKER_URL, socket_connect_timeout=1).ping()
    except redis.RedisError as exc:
        service_missing(f"Redis unreachable ({exc})")
    queue = f"clik-test-{uuid.uuid4().hex[:10]}"
    log = tmp_path / "worker.log"
    child_env = {**os.environ, "CLIK_BROKER_URL": BROKER_URL, "CLIK_STORE_URL": str(tmp_path / "store")}
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from clik_cli.commands.worker import app; app()",
                "--queue",
                queue,
                "--threads",
                "1",
                "--device",
                "cpu",
            ],
            cwd=ROOT,
            env=child_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while "ready." not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        text = log.read_text()
        assert f"queue {queue}" in text and "pool solox1" in text
        assert "clik.encode_products" in text and "clik.reindex" in text  # the tasks are registered
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
        broker = redis.Redis.from_url(BROKER_URL)
        for key in broker.scan_iter(match=f"*{queue}*"):
            broker.delete(key)
    result = runner.invoke(worker_cmd.app, ["--pool", "solo", "--concurrency", "2"])
    assert result.exit_code == 2 and "--pool prefork" in result.output

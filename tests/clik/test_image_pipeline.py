"""clik.image_pipeline on real photos: each stage, per-item failures, batching, threads."""

from __future__ import annotations

import io
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import torch
from PIL import Image

from clik.image_pipeline import DECODE, READ, ImageItem, ImagePipeline, by_digest
from clik.image_source import FetchLimits, content_hash
from clik.transforms import eval_transform

TRANSFORM = eval_transform(64, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


def mean_pool_tower(pixels: torch.Tensor) -> np.ndarray:
    """A stand-in for the tower's maths only (the pipeline is under test): per-channel means."""
    return pixels.mean(dim=(2, 3)).numpy()


@pytest.fixture(scope="module")
def files(photo_files, tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    good = photo_files["chelsea"].read_bytes()
    (root / "corrupt.jpg").write_bytes(good[:400] + b"\x00broken" * 60)
    (root / "notes.jpg").write_bytes(b"not an image at all\n" * 20)
    (root / "copy.jpg").write_bytes(good)
    return {
        **photo_files,
        "corrupt": root / "corrupt.jpg",
        "notes": root / "notes.jpg",
        "copy": root / "copy.jpg",
        "missing": root / "missing.jpg",
    }


def test_every_stage_on_real_photos_and_a_corrupt_one_fails_only_itself(files):
    names = ["chelsea", "coffee", "corrupt", "rocket", "copy", "notes", "missing", "coffee_png"]
    pipeline = ImagePipeline(FetchLimits(), threads=2)
    items = pipeline.read([ImageItem(name, str(files[name])) for name in names])

    # read + hash: the bytes' sha256, the file that is not there fails at "read"
    by_name = {item.key: item for item in items}
    assert by_name["chelsea"].digest == content_hash(files["chelsea"].read_bytes())
    assert by_name["missing"].failed_at == READ and "file not found" in by_name["missing"].reason
    groups = by_digest(items)
    assert [i.key for i in groups[by_name["chelsea"].digest]] == ["chelsea", "copy"]  # one photo, two sources
    assert len(groups) == 6  # chelsea(+copy), coffee, corrupt, rocket, notes, coffee_png

    # decode + transform + encode: batches of 2, failures left out with their stage and reason
    todo = [group[0] for group in groups.values()]
    batches = list(pipeline.encode(todo, TRANSFORM, mean_pool_tower, batch_size=2))
    encoded = [item.key for batch in batches for item in batch.items]
    assert encoded == ["chelsea", "coffee", "rocket", "coffee_png"]  # input order kept
    assert [len(b.items) for b in batches] == [2, 2]
    assert by_name["corrupt"].failed_at == DECODE and "corrupt image" in by_name["corrupt"].reason
    assert by_name["notes"].failed_at == DECODE and "not an image" in by_name["notes"].reason

    # each row is the tower applied to that image's own pixels
    for batch in batches:
        for item, row in zip(batch.items, batch.vectors):
            expected = mean_pool_tower(TRANSFORM(Image.open(files[item.key]).convert("RGB"))[None])[0]
            np.testing.assert_allclose(row, expected, rtol=0, atol=1e-6)
            assert item.pixels is None and item.data is None  # released once encoded


def test_threads_change_nothing_but_speed(files):
    sources = [str(files[n]) for n in ("chelsea", "coffee", "rocket", "corrupt", "coffee_png")] * 3
    results = []
    for threads in (1, 3):
        pipeline = ImagePipeline(threads=threads)
        items = pipeline.read([ImageItem(i, s) for i, s in enumerate(sources)])
        rows = {
            item.key: row
            for batch in pipeline.encode(items, TRANSFORM, mean_pool_tower, 4)
            for item, row in zip(batch.items, batch.vectors)
        }
        results.append((rows, {item.key: item.reason for item in items if not item.ok}))
    (rows1, errors1), (rows3, errors3) = results
    assert rows1.keys() == rows3.keys() and errors1 == errors3 and len(errors1) == 3
    for key in rows1:
        np.testing.assert_array_equal(rows1[key], rows3[key])


def test_decoding_runs_ahead_of_the_tower_but_bounded(files):
    """The threads decode the next batches while the tower runs, never the whole list at once."""
    prepared = []
    lock = threading.Lock()

    def counting_transform(image):
        with lock:
            prepared.append(1)
        return TRANSFORM(image)

    seen_at_call: list[int] = []

    def slow_tower(pixels):
        seen_at_call.append(len(prepared))
        time.sleep(0.3)  # the forward pass takes a while; the threads go on meanwhile
        return mean_pool_tower(pixels)

    data = files["coffee"].read_bytes()
    pipeline = ImagePipeline(threads=2)
    items = pipeline.read([ImageItem(i, data) for i in range(60)])
    batches = list(pipeline.encode(items, counting_transform, slow_tower, batch_size=4))
    assert sum(len(b.items) for b in batches) == 60
    window = 2 * 4 + 2  # ImagePipeline.encode's look-ahead: two batches and one item per thread
    for n, seen in enumerate(seen_at_call):
        assert seen <= 4 * (n + 1) + window  # never more decoded than the window ahead of the tower
    assert seen_at_call[1] > 8  # while batch 1 ran, the next ones were decoded


def test_in_memory_inputs_skip_the_read(files):
    array = np.asarray(Image.open(files["rocket"]).convert("RGB"))
    pipeline = ImagePipeline()
    items = pipeline.read(
        [
            ImageItem("bytes", files["rocket"].read_bytes()),
            ImageItem("array", array),
            ImageItem("pil", Image.fromarray(array)),
        ]
    )
    assert items[0].digest == content_hash(files["rocket"].read_bytes())
    assert items[1].digest is None and items[2].digest is None  # nothing encoded to hash
    (batch,) = pipeline.encode(items, TRANSFORM, mean_pool_tower, 8)
    np.testing.assert_allclose(batch.vectors[1], batch.vectors[2], atol=1e-6)
    np.testing.assert_allclose(batch.vectors[0], batch.vectors[1], atol=0.02)  # JPEG vs its decode


class _Flaky:
    """A real HTTP server answering 503 to the first ``failures`` requests, then the JPEG."""

    def __init__(self, body: bytes, failures: int):
        self.hits = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                outer.hits += 1
                if outer.hits <= failures:
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/a.jpg"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_transient_read_errors_are_tried_again_then_reported(files):
    body = files["coffee"].read_bytes()
    limits = FetchLimits(allow_private_hosts=True)
    flaky = _Flaky(body, failures=2)
    try:
        (item,) = ImagePipeline(limits, read_attempts=3, retry_backoff_s=0.01).read([ImageItem("a", flaky.url)])
        assert item.ok and item.digest == content_hash(body) and flaky.hits == 3
    finally:
        flaky.close()
    flaky = _Flaky(body, failures=5)
    try:
        (item,) = ImagePipeline(limits, read_attempts=2, retry_backoff_s=0.01).read([ImageItem("a", flaky.url)])
        assert item.failed_at == READ and item.error is not None and item.error.transient and flaky.hits == 2
    finally:
        flaky.close()


def test_invalid_url_fails_its_item_only():
    pipeline = ImagePipeline(FetchLimits(allow_private_hosts=True))
    items = pipeline.read([ImageItem("bad", "http://127.0.0.1:99999/a.jpg"), ImageItem("ok", b"x")])
    assert items[0].failed_at == READ and items[1].ok


def test_jpeg_draft_decodes_large_photos_smaller_with_nearly_the_same_pixels(files):
    big = Image.open(files["chelsea"]).convert("RGB").resize((1800, 1200), Image.BICUBIC)
    buf = io.BytesIO()
    big.save(buf, format="JPEG", quality=92)
    items = [ImageItem("full", buf.getvalue())]
    drafted = [ImageItem("draft", buf.getvalue())]
    (full,) = ImagePipeline().encode(ImagePipeline().read(items), TRANSFORM, lambda p: p.flatten(1).numpy(), 1)
    pipeline = ImagePipeline(jpeg_draft=True)
    image = pipeline.decode(pipeline.read(drafted)[0], (64, 64))
    assert image is not None and image.size == (225, 150)  # libjpeg's 1/8: still >= 64 each side
    (draft,) = pipeline.encode(
        pipeline.read([ImageItem("draft", buf.getvalue())]), TRANSFORM, lambda p: p.flatten(1).numpy(), 1
    )
    # the tower's input after the resize differs little (normalised units, range 2)
    assert float(np.abs(full.vectors - draft.vectors).mean()) < 0.03

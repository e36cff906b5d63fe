import io

import numpy as np
import pytest
from PIL import Image

from clik.image_source import FetchLimits, ImageLoadError, decode_image, load_image


def _png(w, h) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (200, 10, 10)).save(buf, "PNG")
    return buf.getvalue()


def test_decompression_bomb_is_refused_before_decoding():
    with pytest.raises(ImageLoadError, match="too many pixels"):
        decode_image(_png(2000, 2000), FetchLimits(max_pixels=1_000_000))


def test_format_allow_list():
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "ICO")
    with pytest.raises(ImageLoadError, match="unsupported image format"):
        decode_image(buf.getvalue())


def test_file_roots_and_size_limit(tmp_path):
    inside = tmp_path / "ok" / "a.png"
    inside.parent.mkdir()
    inside.write_bytes(_png(4, 4))
    limits = FetchLimits(file_roots=(str(tmp_path / "ok"),))
    assert load_image(inside, limits).size == (4, 4)
    assert load_image(f"file://{inside}", limits).size == (4, 4)
    with pytest.raises(ImageLoadError, match="outside the allowed roots"):
        load_image(tmp_path / "ok" / ".." / "secret.png", limits)
    with pytest.raises(ImageLoadError, match="too large"):
        load_image(inside, FetchLimits(max_bytes=10))


def test_unsupported_scheme_and_private_urls():
    with pytest.raises(ImageLoadError, match="unsupported URL scheme"):
        load_image("ftp://example.com/a.jpg")
    for url in ("http://169.254.169.254/latest/meta-data", "http://10.0.0.1/a.jpg", "http://[::1]/a.jpg"):
        with pytest.raises(ImageLoadError, match="refused address"):
            load_image(url)


def test_arrays_grayscale_float_and_bad_shapes():
    assert load_image(np.zeros((5, 6), np.uint8)).size == (6, 5)
    assert load_image(np.ones((5, 6, 3), np.float32)).getpixel((0, 0)) == (255, 255, 255)
    assert load_image(np.zeros((5, 6, 4), np.uint8)).mode == "RGB"
    with pytest.raises(ImageLoadError, match="shape"):
        load_image(np.zeros((5, 6, 2), np.uint8))


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com:99999/a.jpg",  # port out of range
        "http://example.com:abc/a.jpg",  # port not a number
        "http://" + "a" * 70 + ".example/a.jpg",  # a label IDNA cannot encode (> 63 characters)
    ],
)
def test_malformed_urls_fail_with_a_reason_not_an_exception(url):
    """Every bad URL ends as ImageLoadError (that product failed), never ValueError/UnicodeError
    escaping into the worker's batch loop."""
    for limits in (FetchLimits(), FetchLimits(allow_private_hosts=True)):  # with and without the host check
        with pytest.raises(ImageLoadError) as info:
            load_image(url, limits)
        assert not info.value.transient

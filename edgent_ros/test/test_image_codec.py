"""sensor_msgs/Image conversion for rgb8, bgr8 and mono8, and refusals."""

from __future__ import annotations

import numpy as np
import pytest
from sensor_msgs.msg import Image

from edgent_ros import image_codec as ic
from edgent_ros.inference import preprocess


@pytest.fixture
def rgb() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)


@pytest.mark.parametrize('encoding', ['rgb8', 'bgr8'])
def test_colour_round_trip(rgb: np.ndarray, encoding: str) -> None:
    msg = ic.from_rgb(rgb, encoding)
    assert (msg.encoding, msg.width, msg.height, msg.step) == (encoding, 7, 5, 21)
    np.testing.assert_array_equal(ic.to_rgb(msg), rgb)


def test_bgr8_bytes_are_blue_first(rgb: np.ndarray) -> None:
    msg = ic.from_rgb(rgb, 'bgr8')
    assert bytes(msg.data[:3]) == bytes(rgb[0, 0, ::-1])


def test_mono8_becomes_grey_rgb(rgb: np.ndarray) -> None:
    out = ic.to_rgb(ic.from_rgb(rgb, 'mono8'))
    assert out.shape == (5, 7, 3)
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()


def test_row_padding_is_honoured(rgb: np.ndarray) -> None:
    padded = np.zeros((5, 24), dtype=np.uint8)
    padded[:, :21] = rgb.reshape(5, 21)
    msg = Image(height=5, width=7, encoding='rgb8', step=24, data=padded.tobytes())
    np.testing.assert_array_equal(ic.to_rgb(msg), rgb)


@pytest.mark.parametrize('encoding', ['rgba8', '16UC1', 'yuv422', ''])
def test_other_encodings_are_refused(encoding: str) -> None:
    msg = Image(height=2, width=2, encoding=encoding, step=8, data=bytes(16))
    with pytest.raises(ic.ImageError, match='unsupported image encoding'):
        ic.to_rgb(msg)


def test_sizes_that_do_not_add_up_are_refused() -> None:
    with pytest.raises(ic.ImageError, match='needs 12 bytes, data holds 11'):
        ic.to_rgb(Image(height=2, width=2, encoding='rgb8', step=6, data=bytes(11)))
    with pytest.raises(ic.ImageError, match='step 5 is less than'):
        ic.to_rgb(Image(height=2, width=2, encoding='rgb8', step=5, data=bytes(10)))
    with pytest.raises(ic.ImageError, match='empty or absurd'):
        ic.to_rgb(Image(height=0, width=2, encoding='rgb8', step=6, data=b''))


def test_any_frame_size_becomes_the_network_input(rgb: np.ndarray) -> None:
    big = np.random.default_rng(1).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    for frame in (rgb, big):
        x = preprocess(frame)
        assert tuple(x.shape) == (1, 3, 32, 32) and 0.0 <= float(x.min()) <= float(x.max()) <= 1

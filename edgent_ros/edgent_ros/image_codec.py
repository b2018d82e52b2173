"""sensor_msgs/Image <-> numpy for the encodings edgent_ros takes: rgb8, bgr8, mono8.

Rows are read with ``np.frombuffer`` honouring ``step`` (row padding), never
element by element. Any other encoding, or a message whose sizes do not add
up, raises ImageError saying why. Imports sensor_msgs, never rclpy.
"""

from __future__ import annotations

import numpy as np
from sensor_msgs.msg import Image

CHANNELS = {'rgb8': 3, 'bgr8': 3, 'mono8': 1}
MAX_SIDE = 16384


class ImageError(ValueError):
    """An Image that cannot be used; the text says why."""


def check(msg: Image) -> None:
    """Raise ImageError, saying why, unless the image can be converted: its
    encoding is taken and its sizes add up. Reads no pixel."""
    encoding = msg.encoding.lower()
    if encoding not in CHANNELS:
        raise ImageError(f'unsupported image encoding {msg.encoding[:32]!r} (supported: '
                         f"{', '.join(CHANNELS)})")
    channels = CHANNELS[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if not (0 < height <= MAX_SIDE and 0 < width <= MAX_SIDE):
        raise ImageError(f'image of {width}x{height} pixels is empty or absurd')
    if step < width * channels:
        raise ImageError(f'step {step} is less than width {width} x {channels} channel(s)')
    if len(msg.data) != step * height:
        raise ImageError(f'{msg.encoding} image of {width}x{height} with step {step} needs '
                         f'{step * height} bytes, data holds {len(msg.data)}')


def to_rgb(msg: Image) -> np.ndarray:
    """An HxWx3 uint8 RGB array of the image (a copy only where needed)."""
    check(msg)
    encoding = msg.encoding.lower()
    channels = CHANNELS[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    rows = np.frombuffer(msg.data, dtype=np.uint8).reshape(height, step)
    pixels = rows[:, :width * channels].reshape(height, width, channels)
    if encoding == 'rgb8':
        return pixels
    if encoding == 'bgr8':
        return pixels[:, :, ::-1]
    return np.repeat(pixels, 3, axis=2)


def from_rgb(rgb: np.ndarray, encoding: str = 'rgb8', msg: Image | None = None) -> Image:
    """Fill an Image (a new one if None) from an HxWx3 uint8 RGB array."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ImageError(f'expected an HxWx3 uint8 array, got {rgb.shape} {rgb.dtype}')
    if encoding == 'rgb8':
        pixels = rgb
    elif encoding == 'bgr8':
        pixels = rgb[:, :, ::-1]
    elif encoding == 'mono8':
        weights = np.array([0.299, 0.587, 0.114])
        pixels = np.clip(np.rint(rgb @ weights), 0, 255).astype(np.uint8)[:, :, None]
    else:
        raise ImageError(f'unsupported image encoding {encoding!r}')
    pixels = np.ascontiguousarray(pixels)
    msg = Image() if msg is None else msg
    msg.height, msg.width = int(pixels.shape[0]), int(pixels.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = int(pixels.shape[1] * pixels.shape[2])
    msg.data = pixels.tobytes()
    return msg

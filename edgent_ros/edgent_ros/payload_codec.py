"""Codecs for what crosses the link: the network input and activations.

Issue 17's first part, pure (numpy and OpenCV; never rclpy, never the
message classes): an input frame goes as its uint8 pixels or as a JPEG at a
few qualities instead of as float32; an activation goes as float32 (raw),
float16, or 8-bit affine quantised, per tensor or per channel (axis 1 of an
NCHW tensor). ``encode_*`` returns an ``Encoded``; ``decode`` takes one back
to an array, checking everything against the shape the receiver expects
(from the model card), so a hostile or corrupt payload is refused before
memory is spent on it:

- an unknown codec, or one the receiver did not ask for;
- a payload whose size does not match the expected shape (a raw, float16
  or int8 payload has exactly one possible size);
- scales of 0, NaN or inf, zero points outside the 8-bit range, or as many
  scales as the tensor has not channels;
- a JPEG larger than the raw pixels it claims, or whose header declares
  other dimensions than expected (a decompression bomb is refused from its
  header, before decoding), or that does not decode.

Quantisation: ``q = round(x / scale) + zero_point`` clipped to int8,
``x ~ scale * (q - zero_point)``; the range [min, max] of the tensor (or of
each channel) maps onto [-128, 127], with 0 exactly representable.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from edgent_ros import codec_names as cn
from edgent_ros.codec_names import (
    ACTIVATION_CODECS,
    CODECS,
    FLOAT16,
    INPUT_CODECS,
    INT8,
    INT8_CHANNEL,
    PIXELS,
    RAW,
    jpeg_quality,
)
from edgent_ros.datasets import to_model_input

JPEG_PREFIX, JPEG_QUALITIES, LOSSLESS = cn.JPEG_PREFIX, cn.JPEG_QUALITIES, cn.LOSSLESS

# A JPEG is refused if it is larger than the raw pixels times this plus a
# header allowance: a real one at these qualities is far smaller.
JPEG_SLACK, JPEG_HEADER_BYTES = 1.0, 4096
_INT8_MIN, _INT8_MAX = -128, 127


class CodecError(ValueError):
    """A payload that cannot be encoded or decoded; the text says why."""


@dataclass(frozen=True)
class Encoded:
    """A payload and what is needed to decode it."""

    codec: str
    data: bytes
    shape: tuple[int, ...]
    scales: tuple[float, ...] = ()
    zero_points: tuple[int, ...] = ()

    @property
    def nbytes(self) -> int:
        return len(self.data)


def check_codec(codec: str, allowed: Sequence[str] = CODECS) -> None:
    if codec not in allowed:
        raise CodecError(f'codec {codec!r} not accepted here (accepted: {", ".join(allowed)})')


# --- activations ---------------------------------------------------------------------------
def _affine(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scales and zero points mapping [lo, hi] (widened to hold 0) onto int8."""
    lo, hi = np.minimum(lo, 0.0), np.maximum(hi, 0.0)
    span = (hi - lo).astype(np.float64)
    scale = np.where(span > 0, span / (_INT8_MAX - _INT8_MIN), 1.0)
    zero = np.clip(np.round(_INT8_MIN - lo / scale), _INT8_MIN, _INT8_MAX).astype(np.int64)
    return scale.astype(np.float32), zero


def encode_activation(x: np.ndarray, codec: str) -> Encoded:
    """Encode a float32 activation (any shape; per channel: axis 1, rank >= 2)."""
    check_codec(codec, ACTIVATION_CODECS)
    x = np.ascontiguousarray(x, dtype=np.float32)
    if not np.isfinite(x).all():
        raise CodecError('the activation holds NaN or inf')
    shape = tuple(int(d) for d in x.shape)
    if codec == RAW:
        return Encoded(codec, x.astype('<f4', copy=False).tobytes(), shape)
    if codec == FLOAT16:
        if x.size and float(np.abs(x).max()) > float(np.finfo(np.float16).max):
            raise CodecError('the activation exceeds the float16 range')
        return Encoded(codec, x.astype('<f2').tobytes(), shape)
    if codec == INT8:
        scale, zero = _affine(np.array(x.min() if x.size else 0.0),
                              np.array(x.max() if x.size else 0.0))
        q = np.clip(np.round(x / scale) + zero, _INT8_MIN, _INT8_MAX).astype(np.int8)
        return Encoded(codec, q.tobytes(), shape, (float(scale),), (int(zero),))
    if x.ndim < 2 or x.shape[1] == 0:
        raise CodecError(f'per-channel quantisation needs a channel axis 1, got shape {shape}')
    axes = tuple(i for i in range(x.ndim) if i != 1)
    scale, zero = _affine(x.min(axis=axes) if x.size else np.zeros(x.shape[1]),
                          x.max(axis=axes) if x.size else np.zeros(x.shape[1]))
    view = [1] * x.ndim
    view[1] = x.shape[1]
    q = np.clip(np.round(x / scale.reshape(view)) + zero.reshape(view), _INT8_MIN, _INT8_MAX)
    return Encoded(codec, q.astype(np.int8).tobytes(), shape,
                   tuple(float(s) for s in scale), tuple(int(z) for z in zero))


# --- the input frame -----------------------------------------------------------------------
def encode_input(rgb: np.ndarray, codec: str, *, mean: Sequence[float] = (0.0, 0.0, 0.0),
                 std: Sequence[float] = (1.0, 1.0, 1.0)) -> Encoded:
    """Encode an HxWx3 uint8 RGB frame already at the model's input size.
    ``raw`` sends what the network takes (float32 CHW, normalised with mean
    and std); ``pixels`` the uint8 pixels; ``jpegQ`` a JPEG of quality Q."""
    check_codec(codec, INPUT_CODECS)
    rgb = np.ascontiguousarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise CodecError(f'an input frame must be HxWx3 uint8, got {rgb.dtype} {rgb.shape}')
    if codec == RAW:
        return encode_activation(normalise(rgb, mean, std), RAW)
    shape = tuple(int(d) for d in rgb.shape)
    if codec == PIXELS:
        return Encoded(codec, rgb.tobytes(), shape)
    quality = jpeg_quality(codec)
    ok, buf = cv2.imencode('.jpg', cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise CodecError(f'OpenCV could not encode a {shape} frame as JPEG')
    return Encoded(codec, buf.tobytes(), shape)


def normalise(rgb: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """HxWx3 uint8 -> 1x3xHxW float32 as the network takes it (the device's
    ``datasets.to_model_input``)."""
    return to_model_input(rgb, mean, std).numpy()


def jpeg_dimensions(data: bytes) -> tuple[int, int, int]:
    """(height, width, components) from a JPEG's frame header, without
    decoding it; CodecError if there is no well-formed one."""
    if len(data) < 4 or data[:2] != b'\xff\xd8':
        raise CodecError('not a JPEG (no start-of-image marker)')
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            raise CodecError(f'corrupt JPEG: no marker at byte {i}')
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        length = int.from_bytes(data[i + 2:i + 4], 'big')
        if length < 2 or i + 2 + length > len(data):
            raise CodecError('corrupt JPEG: a segment runs past the end')
        if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD,
                      0xCE, 0xCF):
            if length < 8:
                raise CodecError('corrupt JPEG: a short frame header')
            h = int.from_bytes(data[i + 5:i + 7], 'big')
            w = int.from_bytes(data[i + 7:i + 9], 'big')
            return h, w, data[i + 9]
        if marker == 0xDA:
            break
        i += 2 + length
    raise CodecError('corrupt JPEG: no frame header before the image data')


# --- decoding ------------------------------------------------------------------------------
def decode(enc: Encoded, expected_shape: Sequence[int], *,
           allowed: Sequence[str] = CODECS) -> np.ndarray:
    """The array an ``Encoded`` holds, refused (CodecError) unless it is
    exactly what the receiver expects. Activations and ``raw`` inputs come
    back float32 in ``expected_shape``; ``pixels`` and JPEG inputs as HxWx3
    uint8 (``expected_shape`` is then (H, W, 3))."""
    check_codec(enc.codec, allowed)
    expected = tuple(int(d) for d in expected_shape)
    if any(d < 0 for d in expected):
        raise CodecError(f'bad expected shape {expected}')
    if tuple(enc.shape) != expected:
        raise CodecError(f'shape {tuple(enc.shape)} is not the expected {expected}')
    count = math.prod(expected)
    quality = jpeg_quality(enc.codec)
    if quality is not None:
        return _decode_jpeg(enc.data, expected)
    itemsize = {RAW: 4, FLOAT16: 2, INT8: 1, INT8_CHANNEL: 1, PIXELS: 1}[enc.codec]
    if len(enc.data) != count * itemsize:
        raise CodecError(f'{enc.codec} payload of {len(enc.data)} bytes for shape {expected} '
                         f'(expected {count * itemsize})')
    if enc.codec == RAW:
        out = np.frombuffer(enc.data, dtype='<f4').reshape(expected)
        return out
    if enc.codec == FLOAT16:
        return np.frombuffer(enc.data, dtype='<f2').reshape(expected).astype(np.float32)
    if enc.codec == PIXELS:
        if len(expected) != 3 or expected[2] != 3:
            raise CodecError(f'pixels must be HxWx3, expected shape is {expected}')
        return np.frombuffer(enc.data, dtype=np.uint8).reshape(expected)
    channels = 1 if enc.codec == INT8 else (expected[1] if len(expected) >= 2 else -1)
    if len(enc.scales) != channels or len(enc.zero_points) != channels:
        raise CodecError(f'{enc.codec} needs {channels} scales and zero points, got '
                         f'{len(enc.scales)} and {len(enc.zero_points)}')
    scales = np.asarray(enc.scales, dtype=np.float64)
    if not (np.isfinite(scales).all() and (scales > 0).all()):
        raise CodecError(f'{enc.codec} scales must be finite and > 0, got {list(enc.scales)[:4]}')
    zeros = np.asarray(enc.zero_points, dtype=np.int64)
    if ((zeros < _INT8_MIN) | (zeros > _INT8_MAX)).any():
        raise CodecError(f'{enc.codec} zero points must be in [-128, 127]')
    q = np.frombuffer(enc.data, dtype=np.int8).reshape(expected).astype(np.float32)
    if enc.codec == INT8:
        return ((q - zeros[0]) * np.float32(scales[0])).astype(np.float32)
    view = [1] * len(expected)
    view[1] = expected[1]
    return ((q - zeros.reshape(view)) * scales.astype(np.float32).reshape(view)).astype(
        np.float32)


def _decode_jpeg(data: bytes, expected: tuple[int, ...]) -> np.ndarray:
    if len(expected) != 3 or expected[2] != 3:
        raise CodecError(f'a JPEG input must be HxWx3, expected shape is {expected}')
    limit = int(math.prod(expected) * JPEG_SLACK) + JPEG_HEADER_BYTES
    if len(data) > limit:
        raise CodecError(f'JPEG of {len(data)} bytes for {expected[1]}x{expected[0]} pixels '
                         f'(at most {limit})')
    h, w, components = jpeg_dimensions(data)
    if (h, w, components) != expected:
        raise CodecError(f'JPEG header says {w}x{h} with {components} components; expected '
                         f'{expected[1]}x{expected[0]} with 3')
    bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if bgr is None or bgr.shape != expected:
        raise CodecError('corrupt JPEG: it does not decode')
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

"""The names of the link codecs and where each may be used, without the codecs
themselves (``edgent_ros.payload_codec`` needs OpenCV; the planner and the
latency models only need the names).

At partition 0 the network's input crosses the link: ``raw`` (float32, as the
network takes it and as the paper sends it), ``pixels`` (the frame's uint8
pixels at the input size, a quarter of that) or a JPEG of it. Anywhere else
an activation crosses: ``raw``, ``float16``, or 8-bit affine quantisation
per tensor (``int8``) or per channel (``int8_channel``). Device only sends
nothing: codec ``NONE`` (the empty string, as in ``Plan.codec``).
"""

from __future__ import annotations

RAW, FLOAT16, INT8, INT8_CHANNEL = 'raw', 'float16', 'int8', 'int8_channel'
PIXELS = 'pixels'
JPEG_PREFIX = 'jpeg'
NONE = ''
ACTIVATION_CODECS = (RAW, FLOAT16, INT8, INT8_CHANNEL)
JPEG_QUALITIES = (90, 75, 50)
JPEG_CODECS = tuple(f'{JPEG_PREFIX}{q}' for q in JPEG_QUALITIES)
INPUT_CODECS = (RAW, PIXELS, *JPEG_CODECS)
CODECS = tuple(dict.fromkeys(ACTIVATION_CODECS + INPUT_CODECS))
# Lossless: the configuration keeps the raw plan's accuracy.
LOSSLESS = (RAW, PIXELS)


def jpeg_quality(codec: str) -> int | None:
    """The quality of a JPEG codec name (``jpeg75`` -> 75), else None."""
    if codec.startswith(JPEG_PREFIX) and codec[len(JPEG_PREFIX):].isdigit():
        return int(codec[len(JPEG_PREFIX):])
    return None


def valid_at(codec: str, partition: int, num_layers: int) -> bool:
    """Whether ``codec`` can code what crosses at ``partition`` of an exit
    of ``num_layers`` stages (nothing crosses at num_layers: NONE only)."""
    if partition >= num_layers:
        return codec == NONE
    return codec in (INPUT_CODECS if partition == 0 else ACTIVATION_CODECS)


def codec_problem(codec: str, partition: int, num_layers: int) -> str | None:
    """Why ``codec`` cannot be used at ``partition``, or None."""
    if valid_at(codec, partition, num_layers):
        return None
    if partition >= num_layers:
        return f'codec {codec!r} on a device-only plan (nothing crosses the link)'
    where = 'the input (partition 0)' if partition == 0 else \
        f'an activation (partition {partition})'
    allowed = INPUT_CODECS if partition == 0 else ACTIVATION_CODECS
    return f'codec {codec!r} cannot code {where} (codecs there: {", ".join(allowed)})'

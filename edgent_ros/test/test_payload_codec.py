"""Codecs for the link (payload_codec): round trips, their error, and every
kind of bad payload refused before it is decoded."""

from __future__ import annotations

import numpy as np
import pytest

from edgent_ros import payload_codec as pc

SHAPE = (1, 8, 6, 5)


def relu_like(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 1.0, SHAPE).astype(np.float32)
    x[:, 3] *= 20.0  # one channel with a far larger range
    return np.maximum(x, 0.0)


def frame(seed: int = 0, size: tuple[int, int] = (48, 64)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = np.linspace(0, 255, size[1], dtype=np.float32)[None, :, None]
    noise = rng.normal(0, 8, (*size, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def test_activation_round_trips_and_their_error() -> None:
    x = relu_like()
    for codec, bytes_per_value in ((pc.RAW, 4), (pc.FLOAT16, 2), (pc.INT8, 1),
                                   (pc.INT8_CHANNEL, 1)):
        enc = pc.encode_activation(x, codec)
        assert enc.nbytes == x.size * bytes_per_value
        y = pc.decode(enc, SHAPE)
        assert y.dtype == np.float32 and y.shape == SHAPE
        if codec == pc.RAW:
            assert np.array_equal(x, y)
    # Error bounds: float16's relative precision; int8 within half a step of
    # its scale, per tensor or per channel; per channel is finer on the
    # small-range channels.
    y16 = pc.decode(pc.encode_activation(x, pc.FLOAT16), SHAPE)
    assert np.allclose(x, y16, rtol=1e-3, atol=1e-4)
    t = pc.encode_activation(x, pc.INT8)
    assert np.abs(pc.decode(t, SHAPE) - x).max() <= t.scales[0] * 0.5 + 1e-6
    c = pc.encode_activation(x, pc.INT8_CHANNEL)
    yc = pc.decode(c, SHAPE)
    for ch in range(SHAPE[1]):
        assert np.abs(yc[:, ch] - x[:, ch]).max() <= c.scales[ch] * 0.5 + 1e-6
    assert np.abs(yc[:, 0] - x[:, 0]).max() < np.abs(pc.decode(t, SHAPE)[:, 0] - x[:, 0]).max()
    # Zero stays exactly zero (ReLU outputs are mostly zeros).
    assert (pc.decode(t, SHAPE)[x == 0] == 0).all() and (yc[x == 0] == 0).all()
    # A constant (all-zero) tensor quantises without dividing by zero.
    z = np.zeros(SHAPE, np.float32)
    assert (pc.decode(pc.encode_activation(z, pc.INT8_CHANNEL), SHAPE) == 0).all()


def test_input_codecs_are_smaller_and_close() -> None:
    rgb = frame()
    raw = pc.encode_input(rgb, pc.RAW, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    assert raw.nbytes == rgb.size * 4
    back = pc.decode(raw, (1, 3, 48, 64))
    expected = (rgb.transpose(2, 0, 1)[None] / 255.0 - 0.5) / 0.25
    assert np.allclose(back, expected, atol=1e-6)
    pixels = pc.encode_input(rgb, pc.PIXELS)
    assert pixels.nbytes == rgb.size and np.array_equal(pc.decode(pixels, rgb.shape), rgb)
    sizes = []
    for q in pc.JPEG_QUALITIES:
        enc = pc.encode_input(rgb, f'jpeg{q}')
        out = pc.decode(enc, rgb.shape)
        assert out.shape == rgb.shape and out.dtype == np.uint8
        assert np.abs(out.astype(int) - rgb).mean() < 12.0
        sizes.append(enc.nbytes)
    assert sizes == sorted(sizes, reverse=True) and sizes[0] < pixels.nbytes


def test_bad_payloads_are_refused_before_decoding() -> None:
    x = relu_like()
    good = pc.encode_activation(x, pc.INT8_CHANNEL)

    def refused(enc: pc.Encoded, match: str, shape: tuple[int, ...] = SHAPE,
                **kw: object) -> None:
        with pytest.raises(pc.CodecError, match=match):
            pc.decode(enc, shape, **kw)

    from dataclasses import replace
    refused(replace(good, codec='zstd'), 'not accepted')
    refused(good, 'not accepted', allowed=(pc.RAW, pc.FLOAT16))  # not what the plan asked
    refused(good, 'not the expected', shape=(1, 8, 6, 6))
    refused(replace(good, data=good.data[:-1]), 'payload of')  # truncated
    refused(replace(good, data=good.data + b'\0' * 100), 'payload of')  # oversized
    scales = list(good.scales)
    for bad in (0.0, float('nan'), float('inf'), -1.0):
        refused(replace(good, scales=tuple([bad, *scales[1:]])), 'finite and > 0')
    refused(replace(good, scales=good.scales[:-1]), 'scales and zero points')
    refused(replace(good, zero_points=(300, *good.zero_points[1:])), 'zero points')
    with pytest.raises(pc.CodecError, match='NaN'):
        pc.encode_activation(np.full(SHAPE, np.nan, np.float32), pc.INT8)
    with pytest.raises(pc.CodecError, match='float16 range'):
        pc.encode_activation(np.full(SHAPE, 1e6, np.float32), pc.FLOAT16)
    with pytest.raises(pc.CodecError, match='not accepted'):
        pc.encode_activation(x, pc.PIXELS)


def test_hostile_jpegs_are_refused() -> None:
    rgb = frame()
    enc = pc.encode_input(rgb, 'jpeg75')
    from dataclasses import replace
    with pytest.raises(pc.CodecError, match='start-of-image'):
        pc.decode(replace(enc, data=b'GIF89a' + enc.data), rgb.shape)
    with pytest.raises(pc.CodecError):  # cut inside its headers
        pc.decode(replace(enc, data=enc.data[:100]), rgb.shape)
    # A bomb: a header that declares 60000x60000 pixels is refused from the
    # header alone (the frame-header height and width are patched).
    data = bytearray(enc.data)
    h, w, _ = pc.jpeg_dimensions(bytes(data))
    at = bytes(data).find(h.to_bytes(2, 'big') + w.to_bytes(2, 'big'))
    data[at:at + 4] = (60000).to_bytes(2, 'big') * 2
    with pytest.raises(pc.CodecError, match='header says 60000x60000'):
        pc.decode(replace(enc, data=bytes(data)), rgb.shape)
    # Larger than the raw pixels it stands for.
    with pytest.raises(pc.CodecError, match='at most'):
        pc.decode(replace(enc, data=enc.data + b'\0' * rgb.size * 2), rgb.shape)
    # Image data corrupted after valid headers: decodes to something or is
    # refused, never an exception of another kind.
    noisy = bytearray(enc.data)
    noisy[len(noisy) // 2:] = bytes(len(noisy) - len(noisy) // 2)
    try:
        out = pc.decode(replace(enc, data=bytes(noisy)), rgb.shape)
        assert out.shape == rgb.shape
    except pc.CodecError:
        pass

"""Encode and decode speed and size of each link codec (issue 17).

A 4 MB float32 activation (1x256x64x64; ReLU-like: half its values are
zero) through every activation codec, and a 640x480 camera frame (a
held-out digit scaled up) through every input codec: median encode and
decode time, MB/s of the raw tensor, and the payload's size.
Run: scripts/run.sh python bench/bench_codecs.py
Writes bench/results/codecs.json.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, time_us, write

from edgent_ros import payload_codec as pc
from edgent_ros.datasets import load_digits_split, resize_rgb

SHAPE = (1, 256, 64, 64)


def activation() -> np.ndarray:
    x = np.random.default_rng(0).standard_normal(int(np.prod(SHAPE)), dtype=np.float32)
    return np.maximum(x, 0.0).reshape(SHAPE)


def camera_frame() -> np.ndarray:
    rgb = load_digits_split(seed=0).test_images[0]  # uint8 32x32x3
    return np.ascontiguousarray(resize_rgb(rgb, (480, 640)))


def main() -> int:
    rows = []
    x = activation()
    for codec in pc.ACTIVATION_CODECS:
        enc = pc.encode_activation(x, codec)
        rows.append(measure('activation 1x256x64x64 float32', codec, x.nbytes,
                            lambda c=codec: pc.encode_activation(x, c),
                            lambda e=enc: pc.decode(e, SHAPE), enc.nbytes))
    rgb = camera_frame()
    for codec in pc.INPUT_CODECS:
        enc = pc.encode_input(rgb, codec)
        expected = (1, 3, *rgb.shape[:2]) if codec == pc.RAW else rgb.shape
        rows.append(measure('frame 640x480 rgb8', codec, rgb.size * 4,
                            lambda c=codec: pc.encode_input(rgb, c),
                            lambda e=enc, s=expected: pc.decode(e, s), enc.nbytes))
    print(f'{"tensor":32} {"codec":14} {"bytes":>10} {"ratio":>7} {"encode ms":>10} '
          f'{"decode ms":>10} {"enc MB/s":>9} {"dec MB/s":>9}')
    for r in rows:
        print(f'{r["tensor"]:32} {r["codec"]:14} {r["bytes"]:10d} {r["ratio"]:7.3f} '
              f'{r["encode_ms"]:10.2f} {r["decode_ms"]:10.2f} {r["encode_MB_s"]:9.0f} '
              f'{r["decode_MB_s"]:9.0f}')
    lossless = {}
    for name in ('zstandard', 'lz4'):
        try:
            __import__(name)
            lossless[name] = 'installed'
        except ImportError:
            lossless[name] = 'not installed (not measured)'
    path = write('codecs', {'bench': 'codecs', 'machine': machine(), 'rows': rows,
                            'lossless_stage': lossless,
                            'command': 'scripts/run.sh python bench/bench_codecs.py'})
    print(f'lossless stage: {lossless}')
    print(f'wrote {path}')
    return 0


def measure(tensor: str, codec: str, raw_bytes: int, encode: object, decode: object,
            nbytes: int) -> dict[str, object]:
    e = time_us(encode, repeats=30, warmup=3)['median_us'] / 1e3
    d = time_us(decode, repeats=30, warmup=3)['median_us'] / 1e3
    return {'tensor': tensor, 'codec': codec, 'bytes': nbytes,
            'ratio': nbytes / raw_bytes, 'encode_ms': e, 'decode_ms': d,
            'encode_MB_s': raw_bytes / 1e6 / (e / 1e3), 'decode_MB_s': raw_bytes / 1e6 / (d / 1e3)}


if __name__ == '__main__':
    raise SystemExit(main())

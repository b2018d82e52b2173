"""Packing and unpacking a 4 MB float32 tensor to and from edgent_ros/Tensor.

Compared with a plain copy of the same 4 MB buffer, measured in the same run.
Goal (issue 2): packing and unpacking within 3x of that copy.
Run: make bench   (or: scripts/run.sh python bench/bench_tensor_codec.py)
Writes bench/results/tensor_codec.json.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from rclpy.serialization import deserialize_message, serialize_message

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, time_us, write

from edgent_ros import tensor_codec
from edgent_ros_interfaces.msg import Tensor

NBYTES = 4 * 1024 * 1024
GOAL = 3.0


def main() -> int:
    array = np.random.default_rng(0).standard_normal(NBYTES // 4, dtype=np.float32)
    array = array.reshape(1, 256, 64, 64)
    target = np.empty_like(array)
    msg = tensor_codec.to_msg(array)
    wire = serialize_message(msg)
    cases = {
        'plain copy (np.copyto, 4 MB)': lambda: np.copyto(target, array),
        'pack: to_msg': lambda: tensor_codec.to_msg(array),
        'unpack: from_msg (zero-copy view)': lambda: tensor_codec.from_msg(msg),
        'unpack: from_msg(copy=True)': lambda: tensor_codec.from_msg(msg, copy=True),
        'wire: serialize_message (CDR)': lambda: serialize_message(msg),
        'wire: deserialize_message (CDR)': lambda: deserialize_message(wire, Tensor),
    }
    rows = {}
    for label, fn in cases.items():
        stats = time_us(fn, repeats=100)
        stats['GB_per_s'] = NBYTES / (stats['median_us'] * 1e-6) / 1e9
        rows[label] = stats
    copy_us = rows['plain copy (np.copyto, 4 MB)']['median_us']
    print(f'{"case":38} {"median us":>10} {"p90 us":>10} {"GB/s":>8} {"x copy":>7}')
    for label, stats in rows.items():
        stats['x_copy'] = stats['median_us'] / copy_us
        print(f'{label:38} {stats["median_us"]:10.1f} {stats["p90_us"]:10.1f} '
              f'{stats["GB_per_s"]:8.2f} {stats["x_copy"]:7.2f}')
    pack_ok = rows['pack: to_msg']['x_copy'] <= GOAL
    unpack_ok = rows['unpack: from_msg(copy=True)']['x_copy'] <= GOAL
    verdict = 'met' if pack_ok and unpack_ok else 'MISSED'
    print(f'goal: pack and unpack within {GOAL:.0f}x of the plain copy: {verdict}')
    path = write('tensor_codec', {
        'bench': 'tensor_codec', 'bytes': NBYTES, 'goal_x_copy': GOAL, 'goal': verdict,
        'machine': machine(), 'results': rows,
        'command': 'scripts/run.sh python bench/bench_tensor_codec.py'})
    print(f'wrote {path}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())

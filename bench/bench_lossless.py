"""Does a lossless stage after the activation codecs pay? (issue 17)

ReLU outputs are mostly zeros, so zstd or lz4 after raw, float16 or int8
coding may shrink what crosses the link. It pays only where the link time
it saves exceeds the time it adds: compressing on the device (slowed like
its layers on the emulated device) and decompressing on the edge. For every
cut of the model's most accurate exit, on held-out images: the coded
payload's size before and after each lossless coder (median and p90 over
the images), compress and decompress time of one payload (this CPU, each
call after CODEC_PAUSE_MS asleep as a node codes a frame; medians), and at
which bandwidths the stage saves time on the x<slowdown> device.

zstandard and lz4 are not dependencies of edgent_ros: install them in the
venv to run this (`.venv/bin/pip install zstandard lz4`).
Run: scripts/run.sh python bench/bench_lossless.py [--model NAME] [--slowdown K]
Writes bench/results/lossless_<model>.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, write

from edgent_ros import datasets
from edgent_ros import model as m
from edgent_ros import payload_codec as pc
from edgent_ros.profiler import CODEC_PAUSE_MS

BANDWIDTHS_KBPS = (100, 400, 1000, 2000, 5000, 10000)
IMAGES = 40
TIMED = 12  # payloads timed per (cut, codec, coder)


def coders() -> dict[str, tuple[Callable[[bytes], bytes], Callable[[bytes], bytes]]]:
    import lz4.frame
    import zstandard

    z1c, z3c = zstandard.ZstdCompressor(level=1), zstandard.ZstdCompressor(level=3)
    zd = zstandard.ZstdDecompressor()
    return {'zstd1': (z1c.compress, zd.decompress), 'zstd3': (z3c.compress, zd.decompress),
            'lz4': (lz4.frame.compress, lz4.frame.decompress)}


def paused_ms(fn: Callable[[], object]) -> float:
    """CPU ms of one call after CODEC_PAUSE_MS asleep (as profiler.codec_sweep)."""
    time.sleep(CODEC_PAUSE_MS / 1e3)
    start = time.thread_time()
    fn()
    return (time.thread_time() - start) * 1e3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--model', default=m.DEFAULT_MODEL)
    parser.add_argument('--slowdown', type=float, default=250.0,
                        help="the emulated device's slowdown (its compress time x this)")
    args = parser.parse_args(argv)
    try:
        lossless = coders()
    except ImportError as exc:
        print(f'bench_lossless: {exc}; install zstandard and lz4 in the venv to measure',
              file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    net, card = m.load(m.resolve_model_path(args.model))
    net.eval()
    split = datasets.load_split(card.dataset, seed=card.seed)
    size = (card.input_shape[1], card.input_shape[2])
    rgb = [datasets.resize_rgb(np.ascontiguousarray(i), size)
           for i in split.test_images[:IMAGES]]
    x = torch.cat([datasets.to_model_input(r, card.mean, card.std) for r in rgb])
    best = max(card.exits, key=lambda e: (e.accuracy, e.exit_point))
    rows = []
    with torch.inference_mode():
        for p in tqdm(range(1, best.num_layers), desc='cuts', unit='cut'):
            head = net.run(best.exit_point, x, 0, p)
            for codec in pc.ACTIVATION_CODECS:
                payloads = [pc.encode_activation(head[i:i + 1].numpy(), codec).data
                            for i in range(head.shape[0])]
                before = [len(b) for b in payloads]
                for name, (compress, decompress) in lossless.items():
                    packed = [compress(b) for b in payloads]
                    after = [len(b) for b in packed]
                    enc_ms = statistics.median(
                        paused_ms(lambda b=b, f=compress: f(b)) for b in payloads[:TIMED])
                    dec_ms = statistics.median(
                        paused_ms(lambda b=b, f=decompress: f(b)) for b in packed[:TIMED])
                    added_ms = enc_ms * args.slowdown + dec_ms
                    saved = {bw: (float(np.median(before)) - float(np.median(after))) * 8.0 / bw
                             for bw in BANDWIDTHS_KBPS}
                    rows.append({
                        'partition': p, 'codec': codec, 'lossless': name,
                        'bytes_median': float(np.median(before)),
                        'bytes_p90': float(np.percentile(before, 90)),
                        'packed_median': float(np.median(after)),
                        'packed_p90': float(np.percentile(after, 90)),
                        'ratio_median': float(np.median(np.array(after) / np.array(before))),
                        'compress_ms': enc_ms, 'decompress_ms': dec_ms,
                        'added_ms_on_device': added_ms,
                        'saved_ms': {str(bw): s for bw, s in saved.items()},
                        'pays_at_kbps': [bw for bw, s in saved.items() if s > added_ms]})
    print(f'{card.name}, exit {best.exit_point}; added = compress x{args.slowdown:g} + '
          'decompress; saved at each bandwidth (kbit/s) on the median payload')
    print(f'{"p":>3} {"codec":12} {"coder":6} {"bytes":>8} {"packed":>8} {"ratio":>6} '
          f'{"added ms":>9}  pays at')
    for r in rows:
        print(f'{r["partition"]:3d} {r["codec"]:12} {r["lossless"]:6} {r["bytes_median"]:8.0f} '
              f'{r["packed_median"]:8.0f} {r["ratio_median"]:6.3f} '
              f'{r["added_ms_on_device"]:9.1f}  {r["pays_at_kbps"] or "-"}')
    summary = {}
    for codec in pc.ACTIVATION_CODECS:
        for name in lossless:
            mine = [r for r in rows if r['codec'] == codec and r['lossless'] == name]
            summary[f'{codec}+{name}'] = {
                'median_ratio': float(np.median([r['ratio_median'] for r in mine])),
                'cuts_where_it_pays': {str(bw): sum(bw in r['pays_at_kbps'] for r in mine)
                                       for bw in BANDWIDTHS_KBPS},
                'cuts': len(mine)}
    for key, s in summary.items():
        print(f'{key:22} median ratio {s["median_ratio"]:.3f}; cuts where it pays (of '
              f'{s["cuts"]}): {s["cuts_where_it_pays"]}')
    path = write(f'lossless_{card.name}', {
        'bench': 'lossless', 'machine': machine(), 'model': card.name,
        'exit': best.exit_point, 'slowdown': args.slowdown, 'images': len(rgb),
        'rows': rows, 'summary': summary,
        'command': 'scripts/run.sh python bench/bench_lossless.py'
                   + (f' --model {args.model}' if args.model != m.DEFAULT_MODEL else '')
                   + (f' --slowdown {args.slowdown:g}' if args.slowdown != 250.0 else '')})
    print(f'wrote {path}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())

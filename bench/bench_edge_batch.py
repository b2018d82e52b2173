"""Bench: does batching the edge's tails pay? Per frame time of a tail run
alone and in batches of 2, 4 and 8, for every exit of each model, at the
input (partition 0: the plans the edge sees most), the middle and the last
layer, on the CPU with the edge node's default threads, and on a CUDA GPU
when there is one (beside it). Writes bench/results/edge_batch.json, the
plot edge_batch.png and docs/edge_batch.md.

    scripts/run.sh python bench/bench_edge_batch.py [--models NAME ...] [--reps 30]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
from tqdm import tqdm

from edgent_ros import model as m
from edgent_ros import torch_device as td
from edgent_ros.inference import CoInferenceModel

ROOT = Path(__file__).resolve().parent.parent
SIZES = (1, 2, 4, 8)


def per_frame_ms(model: CoInferenceModel, exit_point: int, partition: int, size: int,
                 reps: int) -> float:
    shape = model.expected_shape(exit_point, partition)
    xs = [torch.randn(*shape) for _ in range(size)]
    for _ in range(3):
        model.tail_batch(exit_point, partition, xs)
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        model.tail_batch(exit_point, partition, xs)  # logits back on the CPU: GPU waited for
        times.append((time.perf_counter() - start) * 1e3 / size)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--models', nargs='+', default=['branchy_alexnet_digits',
                                                        'resnet18_digits64'])
    parser.add_argument('--reps', type=int, default=30)
    parser.add_argument('--threads', type=int, default=1, help='torch CPU threads (the edge '
                        'node\'s default: 1)')
    parser.add_argument('--out', default=str(ROOT / 'bench' / 'results' / 'edge_batch.json'))
    parser.add_argument('--doc', default=str(ROOT / 'docs' / 'edge_batch.md'))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    devices = [torch.device('cpu')] + ([td.resolve('cuda')] if torch.cuda.is_available() else [])
    rows = []
    jobs = []
    for name in args.models:
        net, card = m.load(m.resolve_model_path(name))
        for e in card.exits:
            for p in sorted({0, e.num_layers // 2, e.num_layers - 1}):
                jobs.append((name, e.exit_point, p))
    models: dict[tuple[str, str], CoInferenceModel] = {}
    for name, exit_point, p in tqdm(jobs, desc='tails', unit='tail'):
        for device in devices:
            key = (name, str(device))
            if key not in models:
                net, card = m.load(m.resolve_model_path(name))
                models[key] = CoInferenceModel(net, card, device=device)
                models[key].warm_up()
            ms = {s: per_frame_ms(models[key], exit_point, p, s, args.reps) for s in SIZES}
            rows.append({'model': name, 'exit': exit_point, 'partition': p,
                         'device': td.describe(device), 'per_frame_ms': ms,
                         'best_size': min(ms, key=ms.__getitem__),
                         'gain_at_4': ms[1] / ms[4]})
    machine = {'cpu': platform.processor() or platform.machine(), 'cores': os.cpu_count(),
               'torch': torch.__version__, 'threads': args.threads,
               'when': time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}
    Path(args.out).write_text(json.dumps({'machine': machine, 'rows': rows}, indent=1))
    png = Path(args.out).with_suffix('.png')
    plot(rows, png)
    write_doc(Path(args.doc), machine, rows, png)
    for r in rows:
        print(f"{r['model']:24s} exit {r['exit']} p {r['partition']:2d} {r['device']:18s} " +
              ' '.join(f"b{s}: {r['per_frame_ms'][s]:6.2f}" for s in SIZES))
    print(f'wrote {args.out}, {png}, {args.doc}')
    return 0


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    names = sorted({r['model'] for r in rows})
    fig, axes = plt.subplots(1, len(names), figsize=(6 * len(names), 3.8), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        for r in rows:
            if r['model'] == name and r['partition'] == 0:
                ax.plot(SIZES, [r['per_frame_ms'][s] for s in SIZES], 'o-',
                        label=f"exit {r['exit']} ({r['device'].split(' ')[0]})")
        ax.set_xscale('log', base=2)
        ax.set_xticks(SIZES, [str(s) for s in SIZES])
        ax.set_xlabel('batch size')
        ax.set_ylabel('ms per frame')
        ax.set_title(f'{name}: whole tail (partition 0)')
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def write_doc(path: Path, machine: dict, rows: list[dict], png: Path) -> None:
    lines = ['# Batching the edge\'s tails (bench_edge_batch.py)', '',
             f"Machine: {machine['cores']} cores ({machine['cpu']}), torch {machine['torch']}, "
             f"{machine['threads']} torch thread(s) (the edge node's default), "
             f"{machine['when']}. Command: `scripts/run.sh python bench/bench_edge_batch.py`. "
             'Median time per frame over the repetitions; a batch is the tail run once on '
             'that many activations. The edge batches a size only while its own measurement '
             'says it beats one by one by 5% (edge_service.ServiceTimes), so these figures '
             'say where it will.', '',
             f'![batching]({os.path.relpath(png, path.parent)})', '',
             'Latency: ms per frame at each batch size. Throughput: frames per second the '
             'edge can serve one by one, and in batches of 8.', '',
             '| model | exit | partition | device | 1 | 2 | 4 | 8 | per frame at 8 / alone | '
             'frames/s alone | frames/s in 8s |',
             '|---|---|---|---|---|---|---|---|---|---|---|']
    for r in rows:
        ms = r['per_frame_ms']
        lines.append(f"| {r['model']} | {r['exit']} | {r['partition']} | {r['device']} | " +
                     ' | '.join(f'{ms[s]:.2f}' for s in SIZES) + f" | {ms[8] / ms[1]:.2f} | "
                     f'{1e3 / ms[1]:.0f} | {1e3 / ms[8]:.0f} |')
    if not torch.cuda.is_available():
        lines += ['', 'No CUDA GPU here: the GPU column is missing. On a machine with one the '
                  'same command measures it beside the CPU.']
    path.write_text('\n'.join(lines) + '\n')


if __name__ == '__main__':
    raise SystemExit(main())

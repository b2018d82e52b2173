"""Per-exit held-out accuracy and whole-sub-model latency of a model.

Latency: one frame (batch 1, the card's input size, float32, prepared from a
held-out image as the device node prepares a frame), torch inference mode,
median of repeated runs after warm-up, with 1 torch thread and with the
default. Also per exit: its stages, FLOPs, and the share of the backbone's
FLOPs it runs (the backbone before its cut, and with its head).
Run: make bench   (or: scripts/run.sh python bench/bench_model_exits.py [--model NAME])
Writes bench/results/model_exits.json and model_exits.png for the default
model, model_exits_<name>.json and .png for another.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, machine, time_us, write

from edgent_ros import datasets, inference
from edgent_ros import model as m
from edgent_ros.training import evaluate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--model', default=m.DEFAULT_MODEL,
                        help='a model name in the package (or a path to its .yaml)')
    parser.add_argument('--repeats', type=int, default=300)
    parser.add_argument('--warmup', type=int, default=30)
    parser.add_argument('--data-dir', default=None,
                        help='the data set\'s directory (cifar10, folder models)')
    args = parser.parse_args(argv)
    net, card = m.load(m.resolve_model_path(args.model))
    size = (card.input_shape[1], card.input_shape[2])
    data_dir = args.data_dir or card.training.get('data_dir')
    split = datasets.load_split(card.dataset, seed=card.seed, data_dir=data_dir, size=size)
    accuracy = evaluate(net, split.test_images, split.test_labels, mean=card.mean, std=card.std)
    x = inference.preprocess(split.test_images[0], card)
    backbone_flops = sum(s.flops for s in net.trunk_stages) or 1
    default_threads = torch.get_num_threads()
    rows = []
    for e in range(1, net.num_exits + 1):
        cut = net.branch_points[e - 1]
        flops = sum(s.flops for s in net.stages(e))
        row = {'exit': e, 'layers': net.num_layers(e), 'branch_point': cut,
               'head_stages': net.num_layers(e) - cut, 'flops': int(flops),
               'backbone_flops_share': sum(s.flops for s in net.trunk_stages[:cut])
               / backbone_flops,
               'flops_share': flops / backbone_flops,
               'accuracy': accuracy[e - 1], 'card_accuracy': card.exit(e).accuracy}
        for threads in sorted({1, default_threads}):
            torch.set_num_threads(threads)
            with torch.inference_mode():
                stats = time_us(lambda e=e: net.run(e, x), repeats=args.repeats,
                                warmup=args.warmup)
            row[f'latency_ms_{threads}t'] = stats['median_us'] / 1e3
            row[f'latency_p90_ms_{threads}t'] = stats['p90_us'] / 1e3
        rows.append(row)
    torch.set_num_threads(default_threads)
    keys = [k for k in rows[0] if k.startswith('latency_ms_')]
    print(f'model {card.name} ({card.architecture} {"x".join(map(str, card.input_shape))}, '
          f'{card.dataset}, {len(split.test_labels)} held-out images)')
    print(f'{"exit":>4} {"stages":>6} {"FLOPs share":>11} {"accuracy":>9} '
          + ' '.join(f'{k:>16}' for k in keys))
    for r in rows:
        print(f'{r["exit"]:4d} {r["layers"]:6d} {100 * r["flops_share"]:10.1f}% '
              f'{r["accuracy"]:9.4f} ' + ' '.join(f'{r[k]:16.3f}' for k in keys))
    stem = 'model_exits' if card.name == m.DEFAULT_MODEL else f'model_exits_{card.name}'
    command = 'scripts/run.sh python bench/bench_model_exits.py'
    if card.name != m.DEFAULT_MODEL:
        command += f' --model {card.name}'
    if args.repeats != 300:
        command += f' --repeats {args.repeats}'
    path = write(stem, {
        'bench': 'model_exits', 'model': card.name, 'architecture': card.architecture,
        'input_shape': card.input_shape, 'machine': machine(),
        'torch': str(torch.__version__), 'repeats': args.repeats, 'warmup': args.warmup,
        'held_out_images': len(split.test_labels), 'rows': rows, 'command': command})
    print(f'wrote {path}')
    plot(rows, keys[0], card.name, RESULTS / f'{stem}.png')
    return 0


def plot(rows: list[dict[str, float]], key: str, name: str, out: Path) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    xs = [r[key] for r in rows]
    ys = [100 * r['accuracy'] for r in rows]
    ax.plot(xs, ys, 'o-')
    for r, x, y in zip(rows, xs, ys, strict=True):
        ax.annotate(f'exit {r["exit"]} ({r["layers"]} stages)', (x, y),
                    textcoords='offset points', xytext=(6, -10), fontsize=8)
    ax.set_xlabel(f'whole sub-model latency on this machine, ms ({key.split("_")[-1]})')
    ax.set_ylabel('held-out accuracy, %')
    ax.set_title(f'{name}: accuracy vs latency per exit')
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    print(f'wrote {out}')


if __name__ == '__main__':
    raise SystemExit(main())

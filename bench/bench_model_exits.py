"""Per-exit held-out accuracy and whole-sub-model latency of the default model.

Latency: one frame (batch 1, 3x32x32 float32), torch inference mode, median
of repeated runs after warm-up, with 1 torch thread and with the default.
Run: make bench   (or: scripts/run.sh python bench/bench_model_exits.py)
Writes bench/results/model_exits.json and bench/results/model_exits.png.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, machine, time_us, write

from edgent_ros import datasets
from edgent_ros import model as m
from edgent_ros.training import evaluate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--model', default=m.DEFAULT_MODEL)
    parser.add_argument('--repeats', type=int, default=300)
    args = parser.parse_args(argv)
    net, card = m.load(m.resolve_model_path(args.model))
    split = datasets.load_split(card.dataset, seed=card.seed)
    accuracy = evaluate(net, split.test_images, split.test_labels)
    x = datasets.to_model_input(split.test_images[:1])
    default_threads = torch.get_num_threads()
    rows = []
    for e in range(1, net.num_exits + 1):
        row = {'exit': e, 'layers': net.num_layers(e), 'accuracy': accuracy[e - 1],
               'card_accuracy': card.exit(e).accuracy}
        for threads in sorted({1, default_threads}):
            torch.set_num_threads(threads)
            with torch.inference_mode():
                stats = time_us(lambda e=e: net.run(e, x), repeats=args.repeats, warmup=30)
            row[f'latency_ms_{threads}t'] = stats['median_us'] / 1e3
            row[f'latency_p90_ms_{threads}t'] = stats['p90_us'] / 1e3
        rows.append(row)
    torch.set_num_threads(default_threads)
    keys = [k for k in rows[0] if k.startswith('latency_ms_')]
    print(f'model {card.name} ({card.dataset}, {len(split.test_labels)} held-out images)')
    print(f'{"exit":>4} {"layers":>6} {"accuracy":>9} ' + ' '.join(f'{k:>16}' for k in keys))
    for r in rows:
        print(f'{r["exit"]:4d} {r["layers"]:6d} {r["accuracy"]:9.4f} '
              + ' '.join(f'{r[k]:16.3f}' for k in keys))
    path = write('model_exits', {
        'bench': 'model_exits', 'model': card.name, 'machine': machine(),
        'torch': str(torch.__version__), 'rows': rows,
        'command': 'scripts/run.sh python bench/bench_model_exits.py'})
    print(f'wrote {path}')
    plot(rows, keys[0], card.name)
    return 0


def plot(rows: list[dict[str, float]], key: str, name: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    xs = [r[key] for r in rows]
    ys = [100 * r['accuracy'] for r in rows]
    ax.plot(xs, ys, 'o-')
    for r, x, y in zip(rows, xs, ys, strict=True):
        ax.annotate(f'exit {r["exit"]} ({r["layers"]} layers)', (x, y),
                    textcoords='offset points', xytext=(6, -10), fontsize=8)
    ax.set_xlabel(f'whole sub-model latency on this machine, ms ({key.split("_")[-1]})')
    ax.set_ylabel('held-out accuracy, %')
    ax.set_title(f'{name}: accuracy vs latency per exit')
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out = RESULTS / 'model_exits.png'
    fig.savefig(out, dpi=120)
    print(f'wrote {out}')


if __name__ == '__main__':
    raise SystemExit(main())

"""Held-out accuracy of every (exit, partition, codec) of a model (issue 17).

For each exit and each cut, the activation that would cross the link is
encoded and decoded with every activation codec (the input, at partition 0,
with every input codec) and the rest of the exit runs on the result: the
accuracy each configuration would have on the held-out split, against the
raw float32 plan. Target (issue 17): int8 per channel within 1 point of raw
at every exit.
Run: scripts/run.sh python bench/bench_codec_accuracy.py [--model NAME]
Writes bench/results/codec_accuracy_<model>.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, write

from edgent_ros import datasets
from edgent_ros import model as m
from edgent_ros import payload_codec as pc

TARGET_POINTS = 1.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--model', default=m.DEFAULT_MODEL)
    parser.add_argument('--limit', type=int, default=0, help='held-out images (0: all)')
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    net, card = m.load(m.resolve_model_path(args.model))
    net.eval()
    split = datasets.load_split(card.dataset, seed=card.seed)
    images, labels = split.test_images, np.asarray(split.test_labels)
    if args.limit:
        images, labels = images[:args.limit], labels[:args.limit]
    size = (card.input_shape[1], card.input_shape[2])
    rgb = [datasets.resize_rgb(np.ascontiguousarray(i), size) for i in images]
    x = torch.cat([datasets.to_model_input(r, card.mean, card.std) for r in rgb])
    rows = []
    with torch.inference_mode():
        jobs = [(e.exit_point, p) for e in card.exits for p in range(e.num_layers)]
        for exit_point, p in tqdm(jobs, desc='cuts', unit='cut'):
            if p == 0:
                for codec in pc.INPUT_CODECS:
                    sizes = [pc.encode_input(r, codec, mean=card.mean, std=card.std).nbytes
                             for r in rgb]
                    if codec == pc.RAW:
                        inputs = x
                    else:
                        back = [pc.decode(pc.encode_input(r, codec), r.shape) for r in rgb]
                        inputs = torch.cat([datasets.to_model_input(b, card.mean, card.std)
                                            for b in back])
                    logits = net.run(exit_point, inputs, 0, None)
                    rows.append({'exit': exit_point, 'partition': 0, 'codec': codec,
                                 'accuracy': float((logits.argmax(1).numpy() == labels).mean()),
                                 'bytes_p90': float(np.percentile(sizes, 90))})
                continue
            head = net.run(exit_point, x, 0, p)
            for codec in pc.ACTIVATION_CODECS:
                shape = (1, *head.shape[1:])
                decoded, sizes = [], []
                for i in range(head.shape[0]):
                    enc = pc.encode_activation(head[i:i + 1].numpy(), codec)
                    sizes.append(enc.nbytes)
                    decoded.append(torch.from_numpy(pc.decode(enc, shape).copy()))
                logits = net.run(exit_point, torch.cat(decoded), p, None)
                acc = float((logits.argmax(1).numpy() == labels).mean())
                rows.append({'exit': exit_point, 'partition': p, 'codec': codec,
                             'accuracy': acc, 'bytes_p90': float(np.percentile(sizes, 90))})
    raw = {(r['exit'], r['partition']): r['accuracy'] for r in rows if r['codec'] == pc.RAW}
    for e in card.exits:
        print(f'exit {e.exit_point}: raw held-out accuracy {100 * raw[(e.exit_point, 0)]:.1f}% '
              f'(card: {100 * e.accuracy:.1f}%)')
    worst: dict[str, float] = {}
    for r in rows:
        r['points_lost'] = 100.0 * (raw[(r['exit'], r['partition'])] - r['accuracy'])
        worst[r['codec']] = max(worst.get(r['codec'], -100.0), r['points_lost'])
    print(f'{"codec":14} {"worst loss over every exit and cut (points)":>45}')
    for codec, lost in worst.items():
        print(f'{codec:14} {lost:45.2f}')
    met = worst.get(pc.INT8_CHANNEL, 0.0) <= TARGET_POINTS
    print(f'target: int8 per channel within {TARGET_POINTS:g} point of raw at every exit and '
          f'cut: {"met" if met else "MISSED"} ({len(labels)} held-out images)')
    path = write(f'codec_accuracy_{card.name}', {
        'bench': 'codec_accuracy', 'model': card.name, 'images': len(labels),
        'machine': machine(), 'rows': rows, 'worst_points_lost': worst, 'target_met': met,
        'command': f'scripts/run.sh python bench/bench_codec_accuracy.py --model {card.name}'})
    print(f'wrote {path}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())

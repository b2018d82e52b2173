"""Offline: every (exit, partition, codec)'s accuracy and payload size, into the model card.

Issue 17's planner searches (exit, partition, codec); a lossy codec's
accuracy cannot be predicted, so it is measured here on the held-out split,
once, and kept in the card (``codecs``). For each exit and each cut the
activation that would cross the link is encoded and decoded with every
activation codec (at partition 0 the input frame, with every input codec),
and the rest of the exit runs on the result. The payload's size is measured
on the same frames: a JPEG's depends on the content, so the planner plans
with a high percentile of it (``SIZE_PERCENTILE``); the others have one size.
Raw configurations keep the exit's accuracy and are not listed.

Run: edgent-codec-card --model NAME (after edgent-train, which runs it too).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import yaml
from tqdm import tqdm

from edgent_ros import codec_names as cn
from edgent_ros import datasets
from edgent_ros import model as m
from edgent_ros import payload_codec as pc
from edgent_ros.card import CodecEntry, ModelCard

SIZE_PERCENTILE = 90.0


def measure(net: m.BranchyNetwork, card: ModelCard, images: Sequence[np.ndarray],
            labels: np.ndarray, *, progress: bool = True) -> list[CodecEntry]:
    """The held-out accuracy and payload size of every non-raw configuration."""
    net.eval()
    size = (card.input_shape[1], card.input_shape[2])
    rgb = [datasets.resize_rgb(np.ascontiguousarray(i), size) for i in images]
    x = torch.cat([datasets.to_model_input(r, card.mean, card.std) for r in rgb])
    labels = np.asarray(labels)
    entries: list[CodecEntry] = []

    def accuracy(logits: torch.Tensor) -> float:
        return float((logits.argmax(1).numpy() == labels).mean())

    with torch.inference_mode():
        inputs = {}
        for codec in cn.INPUT_CODECS:
            if codec == cn.RAW:
                continue
            coded = [pc.encode_input(r, codec) for r in rgb]
            back = [pc.decode(c, r.shape) for c, r in zip(coded, rgb, strict=True)]
            inputs[codec] = (torch.cat([datasets.to_model_input(b, card.mean, card.std)
                                        for b in back]), [c.nbytes for c in coded])
        jobs = [(e.exit_point, p) for e in card.exits for p in range(e.num_layers)]
        for exit_point, p in tqdm(jobs, desc=f'{card.name} codecs', unit='cut',
                                  disable=not progress):
            if p == 0:
                for codec, (xc, sizes) in inputs.items():
                    entries.append(CodecEntry(
                        exit_point, 0, codec, accuracy(net.run(exit_point, xc, 0, None)),
                        int(np.ceil(np.percentile(sizes, SIZE_PERCENTILE)))))
                continue
            head = net.run(exit_point, x, 0, p)
            shape = (1, *head.shape[1:])
            for codec in cn.ACTIVATION_CODECS:
                if codec == cn.RAW:
                    continue
                decoded, sizes = [], []
                for i in range(head.shape[0]):
                    enc = pc.encode_activation(head[i:i + 1].numpy(), codec)
                    sizes.append(enc.nbytes)
                    decoded.append(torch.from_numpy(pc.decode(enc, shape).copy()))
                entries.append(CodecEntry(
                    exit_point, p, codec, accuracy(net.run(exit_point, torch.cat(decoded), p,
                                                           None)),
                    int(np.ceil(np.percentile(sizes, SIZE_PERCENTILE)))))
    return entries


def annotate(card_path: Path, *, limit: int = 0, progress: bool = True,
             images: Sequence[np.ndarray] | None = None,
             labels: np.ndarray | None = None) -> list[CodecEntry]:
    """Measure a model's codecs and write them into its card (the rest kept),
    on ``images`` and ``labels`` when given, else the card's held-out split."""
    net, card = m.load(card_path)
    if images is None or labels is None:
        split = datasets.load_split(card.dataset, seed=card.seed)
        images, labels = split.test_images, split.test_labels
    labels = np.asarray(labels)
    if limit:
        images, labels = images[:limit], labels[:limit]
    entries = measure(net, card, images, labels, progress=progress)
    raw = yaml.safe_load(card_path.read_text())
    raw['codecs'] = [e.to_dict() for e in entries]
    raw['codecs_measured_on'] = {'images': len(labels), 'split': 'held-out',
                                 'size_percentile': SIZE_PERCENTILE}
    card_path.write_text(yaml.safe_dump(raw, sort_keys=False, width=100))
    return entries


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--model', default=m.DEFAULT_MODEL, help='name or path of a card')
    parser.add_argument('--limit', type=int, default=0, help='held-out images (0: all)')
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    path = m.resolve_model_path(args.model)
    entries = annotate(path, limit=args.limit)
    card = m.load_card(path)
    for e in card.exits:
        mine = [c for c in entries if c.exit_point == e.exit_point]
        worst = max((e.accuracy - c.accuracy for c in mine
                     if c.codec == cn.INT8_CHANNEL), default=0.0)
        print(f'exit {e.exit_point}: raw {100 * e.accuracy:.1f}%, int8 per channel loses at '
              f'most {100 * worst:.2f} points')
    print(f'wrote {len(entries)} codec configurations into {path}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())

"""edgent-train: BranchyNet joint training of the branchy AlexNet.

The loss is the weighted sum of every exit's cross-entropy (BranchyNet,
Teerapittayanon et al., ICPR 2016), so the shared trunk learns features that
serve all exits. Deterministic for a seed on a given machine. Writes
models/<name>.pt (a state_dict) and models/<name>.yaml (architecture,
per-exit held-out accuracy, per-layer metadata, data set, seed, settings,
weights checksum).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from edgent_ros import datasets
from edgent_ros.model import BranchyAlexNet, BranchyNetwork, save


@dataclass
class TrainConfig:
    epochs: int = 40
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    exit_weights: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0, 1.0)
    seed: int = 0


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)


def joint_loss(outputs: Sequence[torch.Tensor], labels: torch.Tensor,
               weights: Sequence[float]) -> torch.Tensor:
    """BranchyNet's objective: sum over exits of weight * cross-entropy."""
    ce = nn.functional.cross_entropy
    return sum((w * ce(out, labels) for w, out in zip(weights, outputs, strict=True)),
               torch.zeros(()))


@torch.no_grad()
def evaluate(model: BranchyNetwork, images: np.ndarray, labels: np.ndarray,
             batch_size: int = 256) -> list[float]:
    """Accuracy of every exit on uint8 RGB images."""
    was_training = model.training
    model.eval()
    correct = np.zeros(model.num_exits)
    for start in range(0, len(images), batch_size):
        x = datasets.to_model_input(images[start:start + batch_size])
        y = torch.from_numpy(labels[start:start + batch_size])
        for i, out in enumerate(model(x)):
            correct[i] += (out.argmax(1) == y).sum().item()
    model.train(was_training)
    return [float(c / len(images)) for c in correct]


def train_steps(model: BranchyNetwork, images: np.ndarray, labels: np.ndarray,
                config: TrainConfig, *, max_steps: int | None = None,
                progress: bool = True) -> list[float]:
    """Train in place; return the mean joint loss of each epoch (or of each step
    when max_steps is given)."""
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr,
                                 weight_decay=config.weight_decay)
    # Cosine decay of the learning rate over the whole run.
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    x_all = datasets.to_model_input(images)
    y_all = torch.from_numpy(labels)
    history: list[float] = []
    steps = 0
    model.train()
    bar = tqdm(range(config.epochs), desc='training', unit='epoch', disable=not progress,
               file=sys.stderr, mininterval=2.0)
    for _ in bar:
        order = torch.randperm(len(x_all), generator=generator)
        losses = []
        for start in range(0, len(order), config.batch_size):
            idx = order[start:start + config.batch_size]
            loss = joint_loss(model(x_all[idx]), y_all[idx], config.exit_weights)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            steps += 1
            if max_steps is not None:
                history.append(loss.item())
                if steps >= max_steps:
                    return history
        scheduler.step()
        history.append(float(np.mean(losses)))
        bar.set_postfix(loss=f'{history[-1]:.3f}')
    return history


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog='edgent-train', description='Train the branchy AlexNet (BranchyNet joint training).')
    parser.add_argument('--dataset', choices=datasets.DATASETS, default='digits')
    parser.add_argument('--data-dir', type=Path, default=None,
                        help='CIFAR-10 python batches directory (for --dataset cifar10)')
    parser.add_argument('--name', default=None,
                        help='model name (default: branchy_alexnet_<dataset>)')
    parser.add_argument('--out-dir', type=Path, default=Path('models'))
    parser.add_argument('--epochs', type=int, default=TrainConfig.epochs)
    parser.add_argument('--batch-size', type=int, default=TrainConfig.batch_size)
    parser.add_argument('--lr', type=float, default=TrainConfig.lr)
    parser.add_argument('--exit-weights', type=float, nargs=5, default=TrainConfig.exit_weights,
                        metavar='W', help='loss weight of exits 1..5')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--threads', type=int, default=0,
                        help='torch CPU threads (0 = torch default)')
    args = parser.parse_args(argv)
    for flag, value in (('--epochs', args.epochs), ('--batch-size', args.batch_size)):
        if value < 1:
            parser.error(f'{flag} must be at least 1, got {value}')
    if args.lr <= 0:
        parser.error(f'--lr must be positive, got {args.lr}')
    if args.threads:
        torch.set_num_threads(args.threads)

    try:
        split = datasets.load_split(args.dataset, seed=args.seed, data_dir=args.data_dir)
    except datasets.DatasetError as exc:
        print(f'edgent-train: error: {exc}', file=sys.stderr)
        return 2
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                         exit_weights=tuple(args.exit_weights), seed=args.seed)
    seed_everything(args.seed)
    model = BranchyAlexNet(num_classes=len(split.class_names))
    print(f'edgent-train: {split.name}, {len(split.train_labels)} train / '
          f'{len(split.test_labels)} held-out images, {args.epochs} epochs, seed {args.seed}',
          file=sys.stderr)
    start = time.monotonic()
    history = train_steps(model, split.train_images, split.train_labels, config)
    accuracies = evaluate(model, split.test_images, split.test_labels)
    name = args.name or f'branchy_alexnet_{split.name}'
    training = {
        'epochs': config.epochs, 'batch_size': config.batch_size, 'lr': config.lr,
        'weight_decay': config.weight_decay, 'optimizer': 'Adam, cosine learning-rate decay',
        'exit_weights': list(config.exit_weights), 'final_loss': history[-1],
        'train_images': len(split.train_labels),
        'held_out_images': len(split.test_labels),
        'seconds': round(time.monotonic() - start, 1), 'torch': str(torch.__version__),
    }
    weights, card = save(model, args.out_dir, name, accuracies=accuracies,
                         dataset=split.name, seed=args.seed, training=training)
    for e, acc in enumerate(accuracies, start=1):
        print(f'exit {e} ({model.num_layers(e)} layers): held-out accuracy {acc:.4f}')
    print(f'wrote {weights} ({weights.stat().st_size / 1e6:.2f} MB) and {card}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())

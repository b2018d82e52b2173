"""edgent-train: BranchyNet joint training of a branchy network.

The loss is the weighted sum of every exit's cross-entropy (BranchyNet,
Teerapittayanon et al., ICPR 2016), so the shared trunk learns features that
serve all exits. Any architecture of ``edgent_ros.model.ARCHITECTURES``: the
paper's branchy AlexNet (the default), ResNet-18 or MobileNetV3-Small with
exits by FLOPs share (or where ``--exits`` says), optionally from a local
backbone state_dict (``--backbone-weights``) and with that backbone frozen
(``--freeze-backbone``: only the exit heads, and the final classifier where
it was re-initialised for another class count, learn).

Images are resized to the network's input size when the data set is loaded
and normalised per batch as the device node does (``datasets.to_model_input``
with the card's mean and std), so a 224x224 training set stays uint8 in
memory. Deterministic for a seed on a given machine. Writes models/<name>.pt
(a state_dict) and models/<name>.yaml (architecture, per-exit held-out
accuracy, per-stage metadata, data set, class names, normalisation, seed,
settings, weights checksum).
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
from edgent_ros.model import (
    ARCHITECTURES,
    BranchyNetwork,
    ModelError,
    architecture_spec,
    load_backbone_weights,
    save,
    sha256_file,
)


@dataclass
class TrainConfig:
    epochs: int = 40
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    exit_weights: tuple[float, ...] = ()  # () = 1.0 for every exit
    seed: int = 0
    # Train only the exit heads (and the backbone tensors named in
    # train_in_backbone): the backbone's parameters stay as they are and its
    # batch norm statistics too (it runs in eval mode).
    freeze_backbone: bool = False
    train_in_backbone: tuple[str, ...] = ()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)


def joint_loss(outputs: Sequence[torch.Tensor], labels: torch.Tensor,
               weights: Sequence[float] = ()) -> torch.Tensor:
    """BranchyNet's objective: sum over exits of weight * cross-entropy
    (no weights: 1.0 for every exit)."""
    ce = nn.functional.cross_entropy
    weights = tuple(weights) or (1.0,) * len(outputs)
    return sum((w * ce(out, labels) for w, out in zip(weights, outputs, strict=True)),
               torch.zeros(()))


def normalisation(model: BranchyNetwork, mean: Sequence[float] | None = None,
                  std: Sequence[float] | None = None) -> tuple[tuple[float, ...],
                                                               tuple[float, ...]]:
    """The mean and std a model's input is normalised with: the given ones, else
    its architecture's (what its card records by default)."""
    spec = architecture_spec(model.architecture)
    return (tuple(mean) if mean is not None else spec.mean,
            tuple(std) if std is not None else spec.std)


def model_input(model: BranchyNetwork, images: np.ndarray, mean: Sequence[float],
                std: Sequence[float]) -> torch.Tensor:
    """uint8 RGB images -> the model's float input, resized first if they are
    not its size (as the device node prepares a frame)."""
    size = (model.input_shape[1], model.input_shape[2])
    return datasets.to_model_input(datasets.resize_all(images, size), mean, std)


@torch.no_grad()
def evaluate(model: BranchyNetwork, images: np.ndarray, labels: np.ndarray,
             batch_size: int = 256, mean: Sequence[float] | None = None,
             std: Sequence[float] | None = None) -> list[float]:
    """Accuracy of every exit on uint8 RGB images (normalised with mean and
    std, by default the architecture's)."""
    if len(images) == 0:
        raise ValueError('no images to evaluate on')
    mean, std = normalisation(model, mean, std)
    was_training = model.training
    model.eval()
    correct = np.zeros(model.num_exits)
    for start in range(0, len(images), batch_size):
        x = model_input(model, images[start:start + batch_size], mean, std)
        y = torch.from_numpy(labels[start:start + batch_size])
        for i, out in enumerate(model(x)):
            correct[i] += (out.argmax(1) == y).sum().item()
    model.train(was_training)
    return [float(c / len(images)) for c in correct]


def freeze_backbone(model: BranchyNetwork, keep: Sequence[str] = ()) -> list[str]:
    """Stop gradients to every backbone parameter but those named in keep (keys
    of ``model.trunk``'s state_dict); returns the frozen names."""
    params = dict(model.trunk.named_parameters())
    unknown = [k for k in keep if k not in params]
    if unknown:
        raise ValueError(f'no backbone parameter {unknown[0]!r}')
    frozen = []
    for name, param in params.items():
        param.requires_grad_(name in keep)
        if name not in keep:
            frozen.append(name)
    return frozen


def _train_mode(model: BranchyNetwork, config: TrainConfig) -> None:
    model.train()
    if config.freeze_backbone:
        model.trunk.eval()  # its batch norm statistics stay those it came with


def train_steps(model: BranchyNetwork, images: np.ndarray, labels: np.ndarray,
                config: TrainConfig, *, max_steps: int | None = None,
                progress: bool = True, mean: Sequence[float] | None = None,
                std: Sequence[float] | None = None) -> list[float]:
    """Train in place; return the mean joint loss of each epoch (or of each step
    when max_steps is given). Images are uint8 RGB, turned into the model's
    input one batch at a time (normalised with mean and std, by default the
    architecture's)."""
    if len(images) == 0:
        raise ValueError('no images to train on')
    mean, std = normalisation(model, mean, std)
    weights = tuple(config.exit_weights) or (1.0,) * model.num_exits
    if len(weights) != model.num_exits:
        raise ValueError(f'{len(weights)} exit weights for {model.num_exits} exits')
    if config.freeze_backbone:
        freeze_backbone(model, config.train_in_backbone)
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad],
                                 lr=config.lr, weight_decay=config.weight_decay)
    # Cosine decay of the learning rate over the whole run.
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    y_all = torch.from_numpy(labels)
    history: list[float] = []
    steps = 0
    _train_mode(model, config)
    per_epoch = -(-len(images) // config.batch_size)
    bar = tqdm(total=config.epochs * per_epoch, desc='training', unit='batch',
               disable=not progress, file=sys.stderr, mininterval=2.0)
    try:
        for epoch in range(config.epochs):
            order = torch.randperm(len(images), generator=generator)
            losses = []
            for start in range(0, len(order), config.batch_size):
                idx = order[start:start + config.batch_size]
                x = model_input(model, images[idx.numpy()], mean, std)
                loss = joint_loss(model(x), y_all[idx], weights)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                losses.append(loss.item())
                steps += 1
                bar.update()
                if max_steps is not None:
                    history.append(loss.item())
                    if steps >= max_steps:
                        return history
            scheduler.step()
            if max_steps is None:
                history.append(float(np.mean(losses)))
            bar.set_postfix(epoch=epoch + 1, loss=f'{history[-1]:.3f}')
    finally:
        bar.close()
    return history


def parse_exits(text: str) -> list[int | str]:
    """'3,6,layer3_1_relu_1' -> [3, 6, 'layer3_1_relu_1']."""
    tokens = [t.strip() for t in text.split(',')]
    if not all(tokens):
        raise ValueError(f'--exits must be comma-separated stage positions or node names, '
                         f'got {text!r}')
    return [int(t) if t.isdigit() else t for t in tokens]


def _fail(message: str) -> int:
    print(f'edgent-train: error: {message}', file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog='edgent-train',
        description='Train a branchy network (BranchyNet joint training over its exits).')
    parser.add_argument('--arch', default='branchy_alexnet',
                        help=f'network: {", ".join(sorted(ARCHITECTURES))}, or '
                        'package.module:factory for your own (default: the paper\'s '
                        'branchy_alexnet)')
    parser.add_argument('--input-size', type=int, default=None, metavar='N',
                        help='square input size (default: the architecture\'s, 32 for the '
                        'AlexNet, 224 for the others)')
    parser.add_argument('--exits', default=None,
                        help='exit cuts: comma-separated stage positions or traced node '
                        'names (default: the architecture\'s, else by FLOPs share)')
    parser.add_argument('--backbone-weights', type=Path, default=None, metavar='FILE',
                        help='a local state_dict (or checkpoint) of the backbone, e.g. '
                        'ImageNet weights; its classifier may be for another class count')
    parser.add_argument('--freeze-backbone', action='store_true',
                        help='train only the exit heads (and a re-initialised final '
                        'classifier); the backbone, BN statistics included, stays as loaded')
    parser.add_argument('--no-codecs', action='store_true',
                        help='skip measuring the link codecs into the card (edgent-codec-card '
                        'does it later)')
    parser.add_argument('--dataset', choices=datasets.DATASETS, default='digits')
    parser.add_argument('--data-dir', type=Path, default=None,
                        help='CIFAR-10 python batches (cifar10), or an image folder with one '
                        'subdirectory per class, optionally under train/ and val/ (folder)')
    parser.add_argument('--name', default=None,
                        help='model name (default: <arch>_<dataset>, then the input size '
                        'where it is not the architecture\'s)')
    parser.add_argument('--out-dir', type=Path, default=Path('models'))
    parser.add_argument('--epochs', type=int, default=TrainConfig.epochs)
    parser.add_argument('--batch-size', type=int, default=TrainConfig.batch_size)
    parser.add_argument('--lr', type=float, default=TrainConfig.lr)
    parser.add_argument('--weight-decay', type=float, default=TrainConfig.weight_decay)
    parser.add_argument('--exit-weights', type=float, nargs='+', default=None, metavar='W',
                        help='loss weight of each exit, first to last (default: 1 each)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--threads', type=int, default=0,
                        help='torch CPU threads (0 = torch default)')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')
    args = parser.parse_args(argv)
    for flag, value in (('--epochs', args.epochs), ('--batch-size', args.batch_size)):
        if value < 1:
            parser.error(f'{flag} must be at least 1, got {value}')
    if args.lr <= 0:
        parser.error(f'--lr must be positive, got {args.lr}')
    if args.weight_decay < 0:
        parser.error(f'--weight-decay must not be negative, got {args.weight_decay}')
    if args.input_size is not None and args.input_size < 1:
        parser.error(f'--input-size must be at least 1, got {args.input_size}')
    if args.freeze_backbone and args.backbone_weights is None:
        parser.error('--freeze-backbone needs --backbone-weights (a frozen random backbone '
                     'would only feed the heads noise)')
    if args.threads < 0:
        parser.error(f'--threads must not be negative, got {args.threads}')
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        spec = architecture_spec(args.arch)
    except ModelError as exc:
        return _fail(str(exc))
    size = args.input_size or spec.input_shape[1]
    input_shape = (spec.input_shape[0], size, size)
    try:
        exits = parse_exits(args.exits) if args.exits is not None else None
        # Check the network before reading the data (the seed is set again below).
        trial = BranchyNetwork(args.arch, 10, input_shape, exits)
        if args.backbone_weights is not None:
            load_backbone_weights(trial, args.backbone_weights)
    except (ValueError, ModelError) as exc:
        return _fail(str(exc))
    if args.exit_weights is not None and len(args.exit_weights) != trial.num_exits:
        return _fail(f'--exit-weights gives {len(args.exit_weights)} weights, {args.arch} '
                     f'here has {trial.num_exits} exits')
    del trial

    try:
        split = datasets.load_split(args.dataset, seed=args.seed, data_dir=args.data_dir,
                                    size=(size, size))
    except datasets.DatasetError as exc:
        return _fail(str(exc))
    if len(split.train_labels) == 0 or len(split.test_labels) == 0:
        return _fail(f'{split.name}: needs training and held-out images, has '
                     f'{len(split.train_labels)} and {len(split.test_labels)}')
    seed_everything(args.seed)
    model = BranchyNetwork(args.arch, len(split.class_names), input_shape, exits)
    reinitialised: list[str] = []
    backbone: dict[str, object] | None = None
    if args.backbone_weights is not None:
        try:
            reinitialised = load_backbone_weights(model, args.backbone_weights)
        except ModelError as exc:
            return _fail(str(exc))
        backbone = {'file': args.backbone_weights.name,
                    'sha256': sha256_file(args.backbone_weights),
                    'reinitialised': reinitialised}
    exit_weights = tuple(args.exit_weights or (1.0,) * model.num_exits)
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                         weight_decay=args.weight_decay, exit_weights=exit_weights,
                         seed=args.seed, freeze_backbone=args.freeze_backbone,
                         train_in_backbone=tuple(reinitialised))
    mean, std = spec.mean, spec.std
    print(f'edgent-train: {args.arch} {"x".join(map(str, input_shape))}, exits after stages '
          f'{list(model.branch_points[:-1])} of {len(model.trunk_stages)}; {split.name}, '
          f'{len(split.train_labels)} train / {len(split.test_labels)} held-out images, '
          f'{len(split.class_names)} classes; {args.epochs} epochs, seed {args.seed}'
          + (', backbone frozen' if args.freeze_backbone else ''), file=sys.stderr)
    start = time.monotonic()
    history = train_steps(model, split.train_images, split.train_labels, config,
                          progress=not args.no_progress, mean=mean, std=std)
    train_seconds = time.monotonic() - start
    accuracies = evaluate(model, split.test_images, split.test_labels, mean=mean, std=std)
    default_name = f'{args.arch.replace(":", "_").split(".")[-1]}_{split.name}'
    if size != spec.input_shape[1]:
        default_name += str(size)
    name = args.name or default_name
    training = {
        'epochs': config.epochs, 'batch_size': config.batch_size, 'lr': config.lr,
        'weight_decay': config.weight_decay, 'optimizer': 'Adam, cosine learning-rate decay',
        'exit_weights': list(config.exit_weights), 'final_loss': history[-1],
        'train_images': len(split.train_labels),
        'held_out_images': len(split.test_labels),
        'seconds': round(time.monotonic() - start, 1), 'torch': str(torch.__version__),
        'train_seconds': round(train_seconds, 1), 'threads': torch.get_num_threads(),
        'exits': args.exits or 'default', 'backbone_weights': backbone,
        'freeze_backbone': args.freeze_backbone,
    }
    if args.data_dir is not None:
        training['data_dir'] = str(args.data_dir)
    weights, card = save(model, args.out_dir, name, accuracies=accuracies,
                         dataset=split.name, seed=args.seed, training=training,
                         class_names=split.class_names, mean=mean, std=std)
    total = sum(s.flops for s in model.trunk_stages) or 1
    for e, acc in enumerate(accuracies, start=1):
        stages = model.stages(e)
        share = sum(s.flops for s in stages) / total
        print(f'exit {e} ({len(stages)} stages, {100 * share:.0f}% of the backbone\'s FLOPs): '
              f'held-out accuracy {acc:.4f}')
    if not args.no_codecs:  # the planner's third knob needs each codec's accuracy
        from edgent_ros import codec_card

        coded = codec_card.annotate(card, images=split.test_images, labels=split.test_labels)
        print(f'measured {len(coded)} link codec configurations on the held-out split')
    print(f'wrote {weights} ({weights.stat().st_size / 1e6:.2f} MB) and {card}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())

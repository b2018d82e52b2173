"""The branchy network: a BranchyNet-style AlexNet with five exits, splittable anywhere.

Each exit i is a sub-model: the shared trunk up to its branch point, then
its branch. A sub-model is an ordered list of layers of the paper's types
(convolution, ReLU, pooling, local response normalization, dropout,
fully connected, flatten), so layers [0, p) can run on the device and
[p, N_i) on the edge (device first; see README). Exits are numbered 1..5,
5 being the most accurate (the paper's i = M).

Layer counts per exit are the paper's (Section IV-A): 12, 16, 19, 20, 22.
Pooling is 3x3, stride 2, ``ceil_mode=True``, which reproduces the shapes of
BranchyNet's Chainer code (``cover_all``): 32 -> 16 -> 8 -> 4.

This module is plain PyTorch and never imports rclpy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from edgent_ros.card import (  # noqa: F401 (the card's names, re-exported)
    DEFAULT_MODEL,
    KNOWN_ARCHITECTURES,
    ExitInfo,
    LayerInfo,
    ModelCard,
    ModelError,
    load_card,
    read_yaml_mapping,
    resolve_in_package,
    resolve_model_path,
    sha256_file,
)

LAYER_TYPES = ('conv', 'relu', 'pool', 'lrn', 'dropout', 'fc', 'flatten')
INPUT_SHAPE = (3, 32, 32)
FLOAT_BYTES = 4


def _pool() -> nn.Module:
    return nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)


def _lrn() -> nn.Module:
    return nn.LocalResponseNorm(size=3, alpha=5e-5, beta=0.75, k=2.0)


def _trunk(num_classes: int) -> list[nn.Module]:
    """The main path: 22 layers ending in the final exit's classifier."""
    return [
        nn.Conv2d(3, 32, 5, stride=1, padding=2), nn.ReLU(), _pool(), _lrn(),     # 0-3: 32x16x16
        nn.Conv2d(32, 64, 5, stride=1, padding=2), nn.ReLU(), _pool(), _lrn(),    # 4-7: 64x8x8
        nn.Conv2d(64, 96, 3, stride=1, padding=1), nn.ReLU(),                     # 8-9
        nn.Conv2d(96, 96, 3, stride=1, padding=1), nn.ReLU(),                     # 10-11
        nn.Conv2d(96, 64, 3, stride=1, padding=1), nn.ReLU(), _pool(),            # 12-14: 64x4x4
        nn.Flatten(),                                                             # 15: 1024
        nn.Linear(1024, 256), nn.ReLU(), nn.Dropout(0.5),                         # 16-18
        nn.Linear(256, 128), nn.ReLU(),                                           # 19-20
        nn.Linear(128, num_classes),                                              # 21
    ]


def _branches(num_classes: int) -> list[list[nn.Module]]:
    """Branch i starts after trunk layer BRANCH_POINTS[i] - 1.

    Early branches are deliberately narrow: BranchyNet's side branches are
    small, and on the easy digits data wide ones scored within a point of the
    final exit, leaving nothing for right-sizing to trade.
    """
    return [
        # Exit 1 after the first conv block (32x16x16): 4 + 8 = 12 layers.
        [nn.Conv2d(32, 8, 3, padding=1), nn.ReLU(), _pool(),                      # 8x8x8
         nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), _pool(),                       # 8x4x4
         nn.Flatten(), nn.Linear(128, num_classes)],
        # Exit 2 after the second conv block (64x8x8): 8 + 8 = 16 layers.
        [nn.Conv2d(64, 8, 3, padding=1), nn.ReLU(), _pool(),                      # 8x4x4
         nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), _pool(),                       # 8x2x2
         nn.Flatten(), nn.Linear(32, num_classes)],
        # Exit 3 after conv4 (96x8x8): 12 + 7 = 19 layers.
        [nn.Conv2d(96, 16, 3, padding=1), nn.ReLU(), _pool(),                     # 16x4x4
         nn.Flatten(), nn.Linear(256, 32), nn.ReLU(), nn.Linear(32, num_classes)],
        # Exit 4 after the flatten (1024): 16 + 4 = 20 layers.
        [nn.Linear(1024, 128), nn.ReLU(), nn.Dropout(0.5), nn.Linear(128, num_classes)],
        # Exit 5 is the trunk itself: 22 layers.
        [],
    ]


BRANCH_POINTS = (4, 8, 12, 16, 22)


def layer_type(layer: nn.Module) -> str:
    """The paper's type of a layer."""
    kinds: dict[type, str] = {
        nn.Conv2d: 'conv', nn.ReLU: 'relu', nn.MaxPool2d: 'pool',
        nn.LocalResponseNorm: 'lrn', nn.Dropout: 'dropout', nn.Linear: 'fc',
        nn.Flatten: 'flatten',
    }
    try:
        return kinds[type(layer)]
    except KeyError:
        raise TypeError(f'{type(layer).__name__} is not one of the layer types '
                        f'{LAYER_TYPES}') from None


class BranchyAlexNet(nn.Module):
    """BranchyNet-style AlexNet for 3x32x32 input with five exits."""

    architecture = 'branchy_alexnet'

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.trunk = nn.ModuleList(_trunk(num_classes))
        self.branches = nn.ModuleList(nn.ModuleList(b) for b in _branches(num_classes))
        self.branch_points = BRANCH_POINTS
        self._layer_lists: list[list[nn.Module]] | None = None

    @property
    def num_exits(self) -> int:
        return len(self.branch_points)

    def layers(self, exit_point: int) -> list[nn.Module]:
        """The ordered layers of the sub-model that ends at exit_point (1-based)."""
        self._check_exit(exit_point)
        i = exit_point - 1
        # Index, not slice: slicing a ModuleList builds a new Module each time.
        trunk = [self.trunk[j] for j in range(self.branch_points[i])]
        return trunk + list(self.branches[i])

    def num_layers(self, exit_point: int) -> int:
        self._check_exit(exit_point)
        i = exit_point - 1
        return self.branch_points[i] + len(self.branches[i])

    def run(self, exit_point: int, x: torch.Tensor, start: int = 0,
            stop: int | None = None) -> torch.Tensor:
        """Run layers [start, stop) of an exit's sub-model on x."""
        if self._layer_lists is None:
            self._layer_lists = [self.layers(e) for e in range(1, self.num_exits + 1)]
        self._check_exit(exit_point)
        layers = self._layer_lists[exit_point - 1]
        stop = len(layers) if stop is None else stop
        if not 0 <= start <= stop <= len(layers):
            raise ValueError(f'layer range [{start}, {stop}) is outside exit {exit_point}, '
                             f'which has {len(layers)} layers')
        for layer in layers[start:stop]:
            x = layer(x)
        return x

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Logits of every exit (trunk run once), as BranchyNet trains."""
        outputs = []
        done = 0
        for bp, branch in zip(self.branch_points, self.branches, strict=True):
            for layer in self.trunk[done:bp]:
                x = layer(x)
            done = bp
            y = x
            for layer in branch:
                y = layer(y)
            outputs.append(y)
        return outputs

    def _check_exit(self, exit_point: int) -> None:
        if not 1 <= exit_point <= self.num_exits:
            raise ValueError(f'exit point {exit_point} is outside 1..{self.num_exits}')


ARCHITECTURES = {BranchyAlexNet.architecture: BranchyAlexNet}


def _describe(index: int, name: str, layer: nn.Module, x: torch.Tensor,
              y: torch.Tensor) -> LayerInfo:
    info = LayerInfo(
        index=index, name=name, type=layer_type(layer),
        in_shape=list(x.shape[1:]), out_shape=list(y.shape[1:]),
        in_bytes=x[0].numel() * FLOAT_BYTES, out_bytes=y[0].numel() * FLOAT_BYTES,
        param_bytes=sum(p.numel() for p in layer.parameters()) * FLOAT_BYTES)
    if isinstance(layer, nn.Conv2d):
        info.in_channels = layer.in_channels
        info.filter_size = int(layer.kernel_size[0])
        info.stride = int(layer.stride[0])
        info.padding = int(layer.padding[0])
        info.num_filters = layer.out_channels
    elif isinstance(layer, nn.MaxPool2d):
        info.in_channels = int(x.shape[1])
        info.filter_size = int(layer.kernel_size)
        info.stride = int(layer.stride)
    elif isinstance(layer, nn.Linear):
        info.in_features = layer.in_features
        info.out_features = layer.out_features
    elif len(x.shape) == 4:
        info.in_channels = int(x.shape[1])
    return info


@torch.no_grad()
def layer_infos(model: BranchyAlexNet, exit_point: int) -> list[LayerInfo]:
    """Per-layer metadata of one exit, read off the real model on a real input."""
    was_training = model.training
    model.eval()
    names = _layer_names(model, exit_point)
    x = torch.zeros(1, *INPUT_SHAPE)
    infos = []
    for index, (name, layer) in enumerate(zip(names, model.layers(exit_point), strict=True)):
        y = layer(x)
        infos.append(_describe(index, name, layer, x, y))
        x = y
    model.train(was_training)
    return infos


def _layer_names(model: BranchyAlexNet, exit_point: int) -> list[str]:
    i = exit_point - 1
    names = []
    counters: dict[str, int] = {}
    trunk = [('trunk', layer) for layer in model.trunk[:model.branch_points[i]]]
    branch = [(f'exit{exit_point}', layer) for layer in model.branches[i]]
    for where, layer in trunk + branch:
        kind = layer_type(layer)
        key = f'{where}.{kind}'
        counters[key] = counters.get(key, 0) + 1
        names.append(f'{where}.{kind}{counters[key]}')
    return names


# --- files -----------------------------------------------------------------------

def make_card(model: BranchyAlexNet, *, name: str, accuracies: Sequence[float],
              dataset: str, seed: int, training: dict[str, Any],
              weights_path: Path) -> ModelCard:
    exits = []
    for e in range(1, model.num_exits + 1):
        exits.append(ExitInfo(
            exit_point=e, num_layers=model.num_layers(e),
            branch_point=model.branch_points[e - 1], accuracy=float(accuracies[e - 1]),
            layers=layer_infos(model, e)))
    return ModelCard(
        name=name, architecture=model.architecture, num_classes=model.num_classes,
        input_shape=list(INPUT_SHAPE), input_bytes=math.prod(INPUT_SHAPE) * FLOAT_BYTES,
        exits=exits, dataset=dataset, seed=seed, training=training,
        weights_file=weights_path.name, weights_sha256=sha256_file(weights_path),
        weights_bytes=weights_path.stat().st_size)


def save(model: BranchyAlexNet, directory: Path, name: str, *,
         accuracies: Sequence[float], dataset: str, seed: int,
         training: dict[str, Any]) -> tuple[Path, Path]:
    """Write <directory>/<name>.pt (a state_dict) and <name>.yaml."""
    directory.mkdir(parents=True, exist_ok=True)
    weights = directory / f'{name}.pt'
    torch.save(model.state_dict(), weights)
    card = make_card(model, name=name, accuracies=accuracies, dataset=dataset, seed=seed,
                     training=training, weights_path=weights)
    card_path = directory / f'{name}.yaml'
    card_path.write_text(yaml.safe_dump(asdict(card), sort_keys=False, width=100))
    return weights, card_path


def load(path: Path | str) -> tuple[BranchyAlexNet, ModelCard]:
    """Load a model from its YAML (or its .pt beside the YAML), checking everything.

    A missing, truncated, corrupt or mismatched file raises ModelError naming
    the file and the problem. Weights load with ``weights_only=True``.
    """
    path = Path(path)
    card_path = path.with_suffix('.yaml')
    card = load_card(card_path)
    weights = card_path.parent / card.weights_file
    if not weights.is_file():
        raise ModelError(f'{weights}: weights file not found (named by {card_path})')
    size = weights.stat().st_size
    if size != card.weights_bytes:
        raise ModelError(f'{weights}: {size} bytes, but {card_path} says '
                         f'{card.weights_bytes} (truncated or replaced?)')
    digest = sha256_file(weights)
    if digest != card.weights_sha256:
        raise ModelError(f'{weights}: sha256 {digest[:12]}... does not match '
                         f'{card.weights_sha256[:12]}... in {card_path}')
    try:
        state = torch.load(weights, map_location='cpu', weights_only=True)
    except Exception as exc:
        raise ModelError(f'{weights}: cannot be read as a state_dict: {exc}') from None
    if not isinstance(state, dict):
        raise ModelError(f'{weights}: holds a {type(state).__name__}, not a state_dict')
    model = ARCHITECTURES[card.architecture](num_classes=card.num_classes)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelError(f'{weights}: does not fit {card.architecture}: {exc}') from None
    model.eval()
    for e in card.exits:
        if e.num_layers != model.num_layers(e.exit_point):
            raise ModelError(f'{card_path}: exit {e.exit_point} has {e.num_layers} layers, '
                             f'the architecture {model.num_layers(e.exit_point)}')
    return model, card



"""Branchy networks: any backbone as a chain of stages, with exits attached at cuts.

A network is a backbone ``nn.Module`` (the whole classifier) that
``edgent_ros.stages.split`` turns into a chain of stages, cut only where one
tensor crosses. Exits are small classifier heads attached after some stages
(BranchyNet, Teerapittayanon et al. 2016; Shallow-Deep Networks, Kaya et al.
2019); the backbone's own classifier is the last exit. Exit i is a
sub-model: backbone stages [0, cut_i), then its head's stages, so stages
[0, p) run on the device and [p, N_i) on the edge (device first). Exits are
numbered 1..M, M (the backbone) being the most accurate (the paper's i = M).

Built-in architectures (``ARCHITECTURES``):

- ``branchy_alexnet``: the paper's network (Section IV-A) for 3x32x32 input,
  with its fixed branches after trunk layers 4, 8, 12 and 16. Every layer is
  a stage (no merging), so exits have the paper's 12, 16, 19, 20 and 22
  layers. Pooling is 3x3, stride 2, ``ceil_mode=True``, which reproduces the
  shapes of BranchyNet's Chainer code (``cover_all``): 32 -> 16 -> 8 -> 4.
- ``resnet18`` and ``mobilenet_v3_small`` (``edgent_ros.architectures``,
  torchvision-compatible state_dicts): exits by default where the backbone's
  cumulative FLOPs reach about 25, 50 and 75%; elementwise layers (batch norm,
  activations) are merged into the stage before them, as they run fused.

This module is plain PyTorch and never imports rclpy.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from edgent_ros.architectures import MobileNetV3Small, ResNet18
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
from edgent_ros.stages import Stage, StageError, split

FLOAT_BYTES = 4
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_EXIT_FRACTIONS = (0.25, 0.5, 0.75)


# --- the paper's branchy AlexNet ---------------------------------------------------

def _pool() -> nn.Module:
    return nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)


def _lrn() -> nn.Module:
    return nn.LocalResponseNorm(size=3, alpha=5e-5, beta=0.75, k=2.0)


def alexnet_trunk(num_classes: int) -> nn.Module:
    """The main path: 22 layers ending in the final exit's classifier."""
    return nn.Sequential(
        nn.Conv2d(3, 32, 5, stride=1, padding=2), nn.ReLU(), _pool(), _lrn(),     # 0-3: 32x16x16
        nn.Conv2d(32, 64, 5, stride=1, padding=2), nn.ReLU(), _pool(), _lrn(),    # 4-7: 64x8x8
        nn.Conv2d(64, 96, 3, stride=1, padding=1), nn.ReLU(),                     # 8-9
        nn.Conv2d(96, 96, 3, stride=1, padding=1), nn.ReLU(),                     # 10-11
        nn.Conv2d(96, 64, 3, stride=1, padding=1), nn.ReLU(), _pool(),            # 12-14: 64x4x4
        nn.Flatten(),                                                             # 15: 1024
        nn.Linear(1024, 256), nn.ReLU(), nn.Dropout(0.5),                         # 16-18
        nn.Linear(256, 128), nn.ReLU(),                                           # 19-20
        nn.Linear(128, num_classes),                                              # 21
    )


def alexnet_branches(num_classes: int, shapes: Sequence[Sequence[int]]) -> list[nn.Module]:
    """The four side branches (their input shapes are fixed by the trunk).

    Early branches are deliberately narrow: BranchyNet's side branches are
    small, and on the easy digits data wide ones scored within a point of the
    final exit, leaving nothing for right-sizing to trade.
    """
    del shapes
    return [
        # Exit 1 after the first conv block (32x16x16): 4 + 8 = 12 layers.
        nn.Sequential(nn.Conv2d(32, 8, 3, padding=1), nn.ReLU(), _pool(),         # 8x8x8
                      nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), _pool(),          # 8x4x4
                      nn.Flatten(), nn.Linear(128, num_classes)),
        # Exit 2 after the second conv block (64x8x8): 8 + 8 = 16 layers.
        nn.Sequential(nn.Conv2d(64, 8, 3, padding=1), nn.ReLU(), _pool(),         # 8x4x4
                      nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), _pool(),          # 8x2x2
                      nn.Flatten(), nn.Linear(32, num_classes)),
        # Exit 3 after conv4 (96x8x8): 12 + 7 = 19 layers.
        nn.Sequential(nn.Conv2d(96, 16, 3, padding=1), nn.ReLU(), _pool(),        # 16x4x4
                      nn.Flatten(), nn.Linear(256, 32), nn.ReLU(),
                      nn.Linear(32, num_classes)),
        # Exit 4 after the flatten (1024): 16 + 4 = 20 layers.
        nn.Sequential(nn.Linear(1024, 128), nn.ReLU(), nn.Dropout(0.5),
                      nn.Linear(128, num_classes)),
    ]


# --- exits on any backbone ----------------------------------------------------------

def exit_head(shape: Sequence[int], num_classes: int, width: int = 128) -> nn.Module:
    """A small classifier on the tensor a cut carries (batch dimension left out).

    Feature maps (CxHxW) get one strided 3x3 convolution with batch norm,
    global average pooling and a linear layer: a few percent of a ResNet-18's
    FLOPs at its first quarter, where Shallow-Deep Networks' heads are a
    pooling and a linear layer; the convolution buys the early exits
    accuracy. Vectors get a linear layer.
    """
    if len(shape) == 3:
        return nn.Sequential(
            nn.Conv2d(shape[0], width, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes))
    if len(shape) == 1:
        return nn.Sequential(nn.Linear(shape[0], num_classes))
    raise ModelError(f'an exit needs a CxHxW feature map or a vector, not shape {list(shape)}')


def flops_exit_cuts(stages: Sequence[Stage],
                    fractions: Sequence[float] = DEFAULT_EXIT_FRACTIONS) -> list[int]:
    """Cut positions (1..len(stages)-1: after stage k-1) where the backbone's
    cumulative FLOPs come nearest each fraction, among cuts whose tensor an
    exit head can take; duplicates dropped, in order."""
    total = sum(s.flops for s in stages) or 1
    done = 0
    cumulative = []
    for s in stages:
        done += s.flops
        cumulative.append(done / total)
    usable = [k for k in range(1, len(stages)) if len(stages[k - 1].out_shape) in (2, 4)]
    cuts: list[int] = []
    for f in fractions:
        if not usable:
            break
        best = min(usable, key=lambda k: (abs(cumulative[k - 1] - f), k))
        if best not in cuts:
            cuts.append(best)
    return sorted(cuts)


@dataclass(frozen=True)
class Architecture:
    """How to build one kind of network."""

    backbone: Callable[[int], nn.Module]
    input_shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    merge_elementwise: bool = True
    exit_cuts: tuple[int, ...] | None = None  # None: by FLOPs share
    heads: Callable[[int, Sequence[Sequence[int]]], list[nn.Module]] | None = None
    description: str = ''


ARCHITECTURES: dict[str, Architecture] = {
    'branchy_alexnet': Architecture(
        backbone=alexnet_trunk, input_shape=(3, 32, 32), mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0), merge_elementwise=False, exit_cuts=(4, 8, 12, 16),
        heads=alexnet_branches, description="the paper's branchy AlexNet (Section IV-A)"),
    'resnet18': Architecture(
        backbone=ResNet18, input_shape=(3, 224, 224), mean=IMAGENET_MEAN, std=IMAGENET_STD,
        description='ResNet-18 (torchvision-compatible), exits by FLOPs share'),
    'mobilenet_v3_small': Architecture(
        backbone=MobileNetV3Small, input_shape=(3, 224, 224), mean=IMAGENET_MEAN,
        std=IMAGENET_STD, description='MobileNetV3-Small (torchvision-compatible), exits by '
        'FLOPs share'),
}
assert set(ARCHITECTURES) == set(KNOWN_ARCHITECTURES)


def architecture_spec(name: str) -> Architecture:
    """A built-in architecture, or a user's: ``package.module:factory``, a
    callable taking the number of classes and returning the whole network as
    an ``nn.Module`` (it must trace with torch.fx and map one image tensor to
    logits). Exits go by FLOPs share; input 3x224x224 and ImageNet
    normalisation unless the card says otherwise."""
    if name in ARCHITECTURES:
        return ARCHITECTURES[name]
    module_name, sep, attribute = name.partition(':')
    if not (sep and module_name and attribute):
        raise ModelError(f'unknown architecture {name!r} (known: {sorted(ARCHITECTURES)}, or '
                         'package.module:factory for a network of your own)')
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise ModelError(f'architecture {name!r}: cannot import {attribute} from '
                         f'{module_name}: {exc}') from None
    if not callable(factory):
        raise ModelError(f'architecture {name!r}: {attribute} is not callable')

    def backbone(num_classes: int) -> nn.Module:
        net = factory(num_classes)
        if not isinstance(net, nn.Module):
            raise ModelError(f'architecture {name!r}: {attribute}({num_classes}) returned a '
                             f'{type(net).__name__}, not an nn.Module')
        return net

    return Architecture(backbone=backbone, input_shape=(3, 224, 224), mean=IMAGENET_MEAN,
                        std=IMAGENET_STD, description=f'{name} (user-defined)')


class BranchyNetwork(nn.Module):
    """A backbone cut into stages, with exit heads at some cuts.

    ``trunk`` is the backbone (its state_dict keys are the backbone's, under
    ``trunk.``) and ``branches`` the heads (the last, the backbone's own
    classifier, is empty). ``exits`` names the cuts: stage positions
    (1..stages-1) or traced node names whose output the head takes; by
    default the architecture's own, else by FLOPs share.
    """

    def __init__(self, architecture: str = 'branchy_alexnet', num_classes: int = 10,
                 input_shape: Sequence[int] | None = None,
                 exits: Sequence[int | str] | None = None) -> None:
        super().__init__()
        spec = architecture_spec(architecture)
        self.architecture = architecture
        self.num_classes = int(num_classes)
        self.input_shape = tuple(int(v) for v in (input_shape or spec.input_shape))
        if len(self.input_shape) != 3 or min(self.input_shape) < 1:
            raise ModelError(f'input shape must be C, H, W, got {list(self.input_shape)}')
        self.trunk = spec.backbone(self.num_classes)
        example = torch.zeros(1, *self.input_shape)
        try:
            stages = split(self.trunk, example, merge_elementwise=spec.merge_elementwise)
        except StageError as exc:
            raise ModelError(f'{architecture}: {exc}') from None
        except RuntimeError as exc:  # the input is too small for the network
            raise ModelError(f'{architecture} cannot take input {list(self.input_shape)}: '
                             f'{exc}') from None
        cuts = self._cuts(stages, exits, spec)
        shapes = [stages[k - 1].out_shape[1:] for k in cuts]
        heads = spec.heads(self.num_classes, shapes) if spec.heads and exits is None else \
            [exit_head(s, self.num_classes) for s in shapes]
        self.branches = nn.ModuleList([*heads, nn.Sequential()])
        self.branch_points = (*cuts, len(stages))
        self.merge_elementwise = spec.merge_elementwise
        # Plain lists, not submodules: the stages share the trunk's and heads' parameters.
        self.trunk_stages: list[Stage] = stages
        self.head_stages: list[list[Stage]] = []
        for k, head in zip(cuts, heads, strict=True):
            at_cut = torch.zeros(1, *stages[k - 1].out_shape[1:])
            self.head_stages.append(split(head, at_cut, merge_elementwise=self.merge_elementwise))
        self.head_stages.append([])
        self._stage_lists = [stages[:bp] + hs for bp, hs in
                             zip(self.branch_points, self.head_stages, strict=True)]

    @staticmethod
    def _cuts(stages: list[Stage], exits: Sequence[int | str] | None,
              spec: Architecture) -> list[int]:
        if exits is None:
            return list(spec.exit_cuts) if spec.exit_cuts is not None else \
                flops_exit_cuts(stages)
        cuts = []
        names = {s.name.split('..')[-1]: s.index + 1 for s in stages}
        for e in exits:
            if isinstance(e, str) and not e.isdigit():
                if e not in names:
                    raise ModelError(f'no stage ends at node {e!r} (stage ends: '
                                     f'{", ".join(list(names)[:-1])})')
                cuts.append(names[e])
            else:
                cuts.append(int(e))
        for k in cuts:
            if not 1 <= k <= len(stages) - 1:
                raise ModelError(f'exit cut {k} is outside 1..{len(stages) - 1} (the '
                                 f'backbone has {len(stages)} stages)')
            if len(stages[k - 1].out_shape) not in (2, 4):
                raise ModelError(f'exit cut {k} carries shape {stages[k - 1].out_shape}; an '
                                 'exit needs a feature map or a vector')
        if sorted(set(cuts)) != list(cuts):
            raise ModelError(f'exit cuts must increase, got {list(cuts)}')
        return cuts

    @property
    def num_exits(self) -> int:
        return len(self.branch_points)

    def stages(self, exit_point: int) -> list[Stage]:
        """The ordered stages of the sub-model that ends at exit_point (1-based)."""
        self._check_exit(exit_point)
        return self._stage_lists[exit_point - 1]

    def num_layers(self, exit_point: int) -> int:
        return len(self.stages(exit_point))

    def run(self, exit_point: int, x: torch.Tensor, start: int = 0,
            stop: int | None = None) -> torch.Tensor:
        """Run stages [start, stop) of an exit's sub-model on x."""
        stages = self.stages(exit_point)
        stop = len(stages) if stop is None else stop
        if not 0 <= start <= stop <= len(stages):
            raise ValueError(f'stage range [{start}, {stop}) is outside exit {exit_point}, '
                             f'which has {len(stages)} stages')
        for stage in stages[start:stop]:
            x = stage(x)
        return x

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Logits of every exit (trunk run once), as BranchyNet trains."""
        outputs = []
        done = 0
        for bp, head in zip(self.branch_points, self.head_stages, strict=True):
            for stage in self.trunk_stages[done:bp]:
                x = stage(x)
            done = bp
            y = x
            for stage in head:
                y = stage(y)
            outputs.append(y)
        return outputs

    def _check_exit(self, exit_point: int) -> None:
        if not 1 <= exit_point <= self.num_exits:
            raise ValueError(f'exit point {exit_point} is outside 1..{self.num_exits}')


def BranchyAlexNet(num_classes: int = 10) -> BranchyNetwork:  # noqa: N802 (a constructor)
    """The paper's branchy AlexNet for 3x32x32 input with five exits."""
    return BranchyNetwork('branchy_alexnet', num_classes)


# --- per-stage metadata for the card ------------------------------------------------

def _main_module(stage: Stage) -> nn.Module | None:
    """The module that gives the stage its kind (its first conv, linear or pool)."""
    wanted: tuple[type, ...] = {
        'conv': (nn.Conv2d,), 'conv_dw': (nn.Conv2d,), 'conv_grouped': (nn.Conv2d,),
        'linear': (nn.Linear,), 'pool': (nn.MaxPool2d, nn.AvgPool2d),
    }.get(stage.kind, ())
    best = None
    for mod in stage.module.modules():
        if wanted and isinstance(mod, wanted):
            if not isinstance(mod, nn.Conv2d) or best is None or \
                    mod.weight.numel() > best.weight.numel():
                best = mod
    return best


def stage_info(index: int, name: str, stage: Stage) -> LayerInfo:
    """What the card records of one stage: its type (Table I's names where the
    type is the paper's: conv, relu, pool, lrn, dropout, fc, flatten), shapes,
    bytes, FLOPs, parameters and Table I's variables of its main layer."""
    kind = 'fc' if stage.kind == 'linear' else stage.kind
    info = LayerInfo(
        index=index, name=name, type=kind, in_shape=stage.in_shape[1:],
        out_shape=stage.out_shape[1:], in_bytes=stage.in_bytes, out_bytes=stage.out_bytes,
        param_bytes=stage.params * FLOAT_BYTES, flops=int(stage.flops),
        ops=['fc' if op == 'linear' else op for op in stage.ops])
    main = _main_module(stage)
    if isinstance(main, nn.Conv2d):
        info.in_channels = main.in_channels
        info.filter_size = int(main.kernel_size[0])
        info.stride = int(main.stride[0])
        info.padding = int(main.padding[0]) if isinstance(main.padding, tuple) else 0
        info.num_filters = main.out_channels
    elif isinstance(main, (nn.MaxPool2d, nn.AvgPool2d)):
        info.in_channels = int(stage.in_shape[1])
        k, s = main.kernel_size, main.stride
        info.filter_size = int(k if isinstance(k, int) else k[0])
        info.stride = int(s if isinstance(s, int) else s[0])
    elif isinstance(main, nn.Linear):
        info.in_features = main.in_features
        info.out_features = main.out_features
    elif len(stage.in_shape) == 4:
        info.in_channels = int(stage.in_shape[1])
    return info


def module_info(module: nn.Module, x: torch.Tensor, name: str = 'sweep') -> LayerInfo:
    """The card's metadata of one module run alone on x, as one stage."""
    stages = split(nn.Sequential(module), x, merge_elementwise=False)
    if len(stages) != 1:
        raise ModelError(f'{type(module).__name__} is {len(stages)} stages, not one')
    return stage_info(0, name, stages[0])


def layer_infos(model: BranchyNetwork, exit_point: int) -> list[LayerInfo]:
    """Per-stage metadata of one exit, read off the traced model."""
    i = exit_point - 1
    infos: list[LayerInfo] = []
    parts = [('trunk', model.trunk_stages[:model.branch_points[i]]),
             (f'exit{exit_point}', model.head_stages[i])]
    for where, stages in parts:
        counters: dict[str, int] = {}
        for stage in stages:
            name = f'{where}.{_label(stage, counters)}'
            infos.append(stage_info(len(infos), name, stage))
    return infos


def _label(stage: Stage, counters: dict[str, int]) -> str:
    """A stage's name: the module path its layers share ('layer1.0'), else its
    type and count ('conv1', as the paper's layers are named)."""
    kind = 'fc' if stage.kind == 'linear' else stage.kind
    counters[kind] = counters.get(kind, 0) + 1
    targets = [str(n.target).split('.') for n in stage.module.graph.nodes
               if n.op == 'call_module']
    common: list[str] = []
    if targets:
        for parts in zip(*targets, strict=False):
            if len(set(parts)) != 1:
                break
            common.append(parts[0])
        if len(targets) == 1 and len(targets[0]) == len(common) and len(stage.ops) > 1:
            common = common[:-1]
    prefix = '.'.join(common)
    if not prefix or prefix.isdigit():
        return f'{kind}{counters[kind]}'
    return prefix


# --- files -----------------------------------------------------------------------

def make_card(model: BranchyNetwork, *, name: str, accuracies: Sequence[float],
              dataset: str, seed: int, training: dict[str, Any], weights_path: Path,
              mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
              class_names: Sequence[str] = ()) -> ModelCard:
    spec = architecture_spec(model.architecture)
    exits = []
    for e in range(1, model.num_exits + 1):
        exits.append(ExitInfo(
            exit_point=e, num_layers=model.num_layers(e),
            branch_point=model.branch_points[e - 1], accuracy=float(accuracies[e - 1]),
            layers=layer_infos(model, e)))
    return ModelCard(
        name=name, architecture=model.architecture, num_classes=model.num_classes,
        input_shape=list(model.input_shape),
        input_bytes=math.prod(model.input_shape) * FLOAT_BYTES,
        exits=exits, dataset=dataset, seed=seed, training=training,
        weights_file=weights_path.name, weights_sha256=sha256_file(weights_path),
        weights_bytes=weights_path.stat().st_size,
        mean=[float(v) for v in (mean if mean is not None else spec.mean)],
        std=[float(v) for v in (std if std is not None else spec.std)],
        class_names=list(class_names))


def save(model: BranchyNetwork, directory: Path, name: str, *,
         accuracies: Sequence[float], dataset: str, seed: int,
         training: dict[str, Any], class_names: Sequence[str] = (),
         mean: Sequence[float] | None = None,
         std: Sequence[float] | None = None) -> tuple[Path, Path]:
    """Write <directory>/<name>.pt (a state_dict) and <name>.yaml."""
    directory.mkdir(parents=True, exist_ok=True)
    weights = directory / f'{name}.pt'
    torch.save(model.state_dict(), weights)
    card = make_card(model, name=name, accuracies=accuracies, dataset=dataset, seed=seed,
                     training=training, weights_path=weights, mean=mean, std=std,
                     class_names=class_names)
    card_path = directory / f'{name}.yaml'
    card_path.write_text(yaml.safe_dump(asdict(card), sort_keys=False, width=100))
    return weights, card_path


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state_dict from a file (a bare state_dict, or a checkpoint holding one
    under 'state_dict' or 'model'), read with ``weights_only=True``."""
    try:
        state = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as exc:
        raise ModelError(f'{path}: cannot be read as a state_dict: {exc}') from None
    if isinstance(state, dict):
        for key in ('state_dict', 'model'):
            if isinstance(state.get(key), dict):
                state = state[key]
                break
    if not isinstance(state, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise ModelError(f'{path}: holds a {type(state).__name__}, not a state_dict of '
                         'named tensors')
    return state


def check_fit(module: nn.Module, state: dict[str, torch.Tensor], what: str,
              allow_new: Sequence[str] = ()) -> list[str]:
    """Refuse a state_dict that does not fit ``module``, naming the first
    mismatched tensor. Keys in ``allow_new`` (a classifier for another number
    of classes) may differ in shape: they are returned, left out of the load."""
    own = module.state_dict()
    skipped = []
    for key, tensor in own.items():
        if key not in state:
            raise ModelError(f'{what}: has no tensor {key!r} (shape {list(tensor.shape)}); '
                             'it is not a state_dict of this architecture')
        if tuple(state[key].shape) != tuple(tensor.shape):
            if key in allow_new:
                skipped.append(key)
                continue
            raise ModelError(f'{what}: tensor {key!r} has shape {list(state[key].shape)}, the '
                             f'architecture needs {list(tensor.shape)}')
    for key in state:
        if key not in own:
            raise ModelError(f'{what}: unexpected tensor {key!r}; it is not a state_dict of '
                             'this architecture')
    return skipped


def load_backbone_weights(model: BranchyNetwork, path: Path | str) -> list[str]:
    """Load a backbone state_dict (for example torchvision's ImageNet weights
    for resnet18, downloaded elsewhere) into ``model.trunk``. The final
    classifier's tensors may be for another number of classes: they keep
    their fresh initialisation and are returned."""
    path = Path(path)
    state = read_state_dict(path)
    own = model.trunk.state_dict()
    last_linear = [n for n, mod in model.trunk.named_modules() if isinstance(mod, nn.Linear)]
    allow = [f'{last_linear[-1]}.{p}' for p in ('weight', 'bias')] if last_linear else []
    skipped = check_fit(model.trunk, state, f'{path} (for {model.architecture})', allow)
    model.trunk.load_state_dict({k: v for k, v in state.items() if k not in skipped},
                                strict=False)
    assert set(own) == set(model.trunk.state_dict())
    return skipped


def build(card: ModelCard) -> BranchyNetwork:
    """The card's network with fresh weights, its exits where the card says."""
    cuts = [e.branch_point for e in card.exits[:-1]]
    spec = architecture_spec(card.architecture)
    exits = None if spec.exit_cuts is not None and tuple(cuts) == spec.exit_cuts else cuts
    return BranchyNetwork(card.architecture, card.num_classes, card.input_shape, exits)


def load(path: Path | str) -> tuple[BranchyNetwork, ModelCard]:
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
    state = read_state_dict(weights)
    model = build(card)
    check_fit(model, state, f'{weights}: does not fit {card.architecture}')
    model.load_state_dict(state, strict=True)
    model.eval()
    for e in card.exits:
        if e.num_layers != model.num_layers(e.exit_point):
            raise ModelError(f'{card_path}: exit {e.exit_point} has {e.num_layers} stages, '
                             f'the architecture {model.num_layers(e.exit_point)}')
        for info, stage in zip(e.layers, model.stages(e.exit_point), strict=True):
            if list(info.in_shape) != list(stage.in_shape[1:]):
                raise ModelError(f'{card_path}: exit {e.exit_point} stage {info.index} takes '
                                 f'{info.in_shape}, the network {stage.in_shape[1:]}')
    return model, card



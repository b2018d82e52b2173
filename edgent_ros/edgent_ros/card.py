"""A model's card: its YAML (architecture, exits, layers, accuracies, weights).

What the planner, the latency models and the nodes need to know of a model
without running it: reading a card imports neither torch nor rclpy, so the
planner and bandwidth processes stay small (a Pi has 1 GB). The network
itself is in ``edgent_ros.model``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from edgent_ros.codec_names import codec_problem

# Architectures edgent_ros.model can build, by the name their cards carry.
KNOWN_ARCHITECTURES = ('branchy_alexnet', 'resnet18', 'mobilenet_v3_small')
# A network of the user's own: package.module:factory (edgent_ros.model).
USER_ARCHITECTURE = re.compile(r'[A-Za-z_][\w.]*:[A-Za-z_]\w*')


class ModelError(ValueError):
    """A model file that cannot be used; the text names the file and the problem."""


@dataclass
class LayerInfo:
    """What the profiler and the planner need to know about one stage.

    A stage is one layer of the paper's types in the branchy AlexNet, and a
    run of layers cut where one tensor crosses in other networks (a residual
    block, a convolution with its batch norm and activation).

    Sizes are float32 bytes of one frame (batch 1). Table I's independent
    variables: input and output data size, input feature maps (channels),
    filter size, stride, number of filters (conv); in/out features (fc).
    """

    index: int
    name: str
    type: str
    in_shape: list[int]
    out_shape: list[int]
    in_bytes: int
    out_bytes: int
    in_channels: int = 0
    filter_size: int = 0
    stride: int = 0
    padding: int = 0
    num_filters: int = 0
    in_features: int = 0
    out_features: int = 0
    param_bytes: int = 0
    flops: int = 0  # floating-point operations, a multiply-add counting 2
    ops: list[str] = field(default_factory=list)  # a stage's ops, in order


@dataclass
class ExitInfo:
    """One exit's facts in the model's YAML."""

    exit_point: int
    num_layers: int
    branch_point: int
    accuracy: float
    layers: list[LayerInfo] = field(default_factory=list)


@dataclass(frozen=True)
class CodecEntry:
    """One lossy or sized (exit, partition, codec) configuration, measured on
    the held-out split (``edgent_ros.codec_card``): its accuracy and the
    bytes its payload takes (a high percentile, for a JPEG)."""

    exit_point: int
    partition: int
    codec: str
    accuracy: float
    bytes: int

    def to_dict(self) -> dict[str, Any]:
        return {'exit_point': self.exit_point, 'partition': self.partition,
                'codec': self.codec, 'accuracy': self.accuracy, 'bytes': self.bytes}


@dataclass
class ModelCard:
    """The model's YAML: architecture, exits, and how it was made."""

    name: str
    architecture: str
    num_classes: int
    input_shape: list[int]
    input_bytes: int
    exits: list[ExitInfo]
    dataset: str
    seed: int
    training: dict[str, Any]
    weights_file: str
    weights_sha256: str
    weights_bytes: int
    # Preprocessing: the frame is resized to input_shape, scaled to [0, 1],
    # then (x - mean) / std per RGB channel.
    mean: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    std: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0])
    class_names: list[str] = field(default_factory=list)
    # Link codecs measured offline (edgent_ros.codec_card); empty: raw only.
    codecs: list[CodecEntry] = field(default_factory=list)
    codecs_measured_on: dict[str, Any] = field(default_factory=dict)

    def exit(self, exit_point: int) -> ExitInfo:
        for info in self.exits:
            if info.exit_point == exit_point:
                return info
        raise ValueError(f'model {self.name} has no exit {exit_point}')

    @property
    def accuracies(self) -> list[float]:
        return [e.accuracy for e in self.exits]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            digest.update(chunk)
    return digest.hexdigest()


def read_yaml_mapping(path: Path, what: str, error: type[ValueError]) -> dict[str, Any]:
    """A YAML file's top-level mapping; ``error`` names the file and the problem."""
    if not path.is_file():
        raise error(f'{path}: {what} not found')
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise error(f'{path}: not valid YAML: {exc}') from None
    if not isinstance(raw, dict):
        raise error(f'{path}: expected a mapping, found {type(raw).__name__}')
    return raw


def load_card(path: Path | str) -> ModelCard:
    """Read and check a model's YAML."""
    path = Path(path)
    raw = read_yaml_mapping(path, 'model description', ModelError)
    try:
        exits = [ExitInfo(**{**e, 'layers': [LayerInfo(**li) for li in e['layers']]})
                 for e in raw['exits']]
        codecs = [CodecEntry(**c) for c in raw.get('codecs') or []]
        card = ModelCard(**{**raw, 'exits': exits, 'codecs': codecs})
    except (KeyError, TypeError) as exc:
        raise ModelError(f'{path}: missing or unexpected field: {exc}') from None
    if card.architecture not in KNOWN_ARCHITECTURES and not USER_ARCHITECTURE.fullmatch(
            str(card.architecture)):
        raise ModelError(f'{path}: unknown architecture {card.architecture!r} '
                         f'(known: {sorted(KNOWN_ARCHITECTURES)}, or package.module:factory)')
    shape = card.input_shape
    if not (isinstance(shape, list) and len(shape) == 3
            and all(isinstance(v, int) and v >= 1 for v in shape)):
        raise ModelError(f'{path}: input_shape must be [C, H, W] of positive integers, '
                         f'got {shape!r}')
    for what, values in (('mean', card.mean), ('std', card.std)):
        if not (isinstance(values, list) and len(values) == shape[0]
                and all(isinstance(v, (int, float)) for v in values)):
            raise ModelError(f'{path}: {what} must list {shape[0]} numbers (one per input '
                             f'channel), got {values!r}')
    if not all(v > 0 for v in card.std):
        raise ModelError(f'{path}: std must be positive, got {card.std}')
    layers = {e.exit_point: e.num_layers for e in card.exits}
    for c in card.codecs:
        n = layers.get(c.exit_point)
        why = f'no exit {c.exit_point}' if n is None else codec_problem(c.codec, c.partition, n)
        if why is None and not (isinstance(c.accuracy, (int, float)) and 0 <= c.accuracy <= 1
                                and isinstance(c.bytes, int) and c.bytes > 0):
            why = f'accuracy {c.accuracy!r} must be in [0, 1] and bytes {c.bytes!r} > 0'
        if why:
            raise ModelError(f'{path}: codecs: exit {c.exit_point}, partition {c.partition}, '
                             f'codec {c.codec!r}: {why}')
    return card


DEFAULT_MODEL = 'branchy_alexnet_digits'


def resolve_in_package(name_or_path: str | Path, subdir: str, what: str) -> Path:
    """A YAML file from a path, or from a bare name in the package's ``subdir``.

    Looks in order: the path as given (with .yaml added if missing), the
    installed package share directory, the source tree. Raises FileNotFoundError
    listing every place looked at.
    """
    given = Path(name_or_path)
    candidates = [given, given.with_suffix('.yaml')]
    if given.parent == Path('.'):
        stem = given.with_suffix('').name
        try:
            from ament_index_python.packages import get_package_share_directory
            share = Path(get_package_share_directory('edgent_ros'))
            candidates.append(share / subdir / f'{stem}.yaml')
        except (ImportError, LookupError, ValueError, OSError):  # OSError: no AMENT_PREFIX_PATH
            pass
        candidates.append(Path(__file__).resolve().parent.parent / subdir / f'{stem}.yaml')
    for candidate in candidates:
        if candidate.suffix == '.yaml' and candidate.is_file():
            return candidate
    raise FileNotFoundError(f'{name_or_path}: no such {what} (looked for '
                            f"{', '.join(str(c) for c in candidates)})")


def resolve_model_path(name_or_path: str | Path) -> Path:
    """A model's YAML from a path, or from a bare name in the package's models/."""
    try:
        return resolve_in_package(name_or_path, 'models', 'model')
    except FileNotFoundError as exc:
        raise ModelError(str(exc)) from None

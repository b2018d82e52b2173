"""Layer latency prediction: regression models per layer type (paper Sec. III-B).

A *profile* holds, for one machine in one role (device or edge), one linear
model per layer type over exactly the independent variables of the paper's
Table I, fitted offline by the profiler (``edgent_ros.profiler``):

=============  ==============================================================
layer type     variables (sizes in bytes of float32 data, one frame)
=============  ==============================================================
conv           x1 = input data size (the input feature maps),
               x2 = (filter size / stride)^2 * number of filters
relu           input data size
pool           input data size, output data size
lrn            input data size
dropout        input data size
fc             input data size, output data size
flatten        input data size (ours: the paper's Chainer model has no
               flatten layer; its cost is a view, near zero)
model_load     model size (bytes of the weights file)
=============  ==============================================================

Latencies are milliseconds. Negative predictions (Table II has negative
intercepts) are clamped to zero; a layer whose variables lie far outside the
range the profile was fitted on is flagged.

Stages of the other architectures (``edgent_ros.stages``: a convolution
with its batch norm and activation merged, a residual block, ...) are not
Table I's bare layers. ``stage_key`` gives each stage the key of its
regression: a stage of exactly one layer of a paper type (every stage of the
branchy AlexNet, ResNet-18's max pooling and final FC) keeps the paper's
model above; any other stage gets a key of its own (``STAGE_VARIABLES``),
regressed on FLOPs and bytes, and profiled *whole*, as it runs (the
profiler times the stage's own callable, so merged ops are covered):

=================  ==========================================================
key                stages, and the variables regressed on
=================  ==========================================================
conv_fused         a dense convolution with what is merged into it (batch
                   norm, activation): flops, in_bytes, out_bytes, param_bytes
conv_dw            a depthwise convolution (and its merged batch norm,
                   activation): flops, in_bytes, out_bytes
block_residual     a residual block without depthwise convolutions (ResNet's
                   basic block, with or without its 1x1 downsample): flops,
                   in_bytes, out_bytes, param_bytes
block_inverted     an inverted residual with its add, no squeeze-excitation
                   (MobileNet): flops, in_bytes, param_bytes (out = in)
block_inverted_se  the same with squeeze-excitation: flops, in_bytes,
                   param_bytes
block_se           a squeeze-excitation stage alone (global pool, two 1x1
                   convolutions, gate, multiply): in_bytes, param_bytes
                   (its FLOPs are a sum of those two)
adaptive_pool      global (adaptive) pooling: in_bytes, out_bytes
fc_fused           a linear layer with merged activation/dropout: flops,
                   in_bytes, out_bytes
=================  ==========================================================

Their coefficients are fitted non-negative (more work never costs less
time), unlike Table II's. A stage whose key no profile model covers (another
kind of block) is refused by ``Profile.require`` naming the key.

``SubModelLatency`` turns a model card and two profiles into per-exit arrays
of device and edge layer latencies and of the bytes that cross the link at
each partition point, with prefix sums; ``edgent_ros.planner.Planner`` turns
those into the latency of any (exit, partition, bandwidth).
"""

from __future__ import annotations

import math
import platform
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from edgent_ros.card import ExitInfo, LayerInfo, ModelCard, read_yaml_mapping, resolve_in_package
from edgent_ros.codec_names import ACTIVATION_CODECS, CODECS, INPUT_CODECS, LOSSLESS, NONE, RAW

VARIABLES: dict[str, tuple[str, ...]] = {
    'conv': ('in_bytes', 'filter_term'),
    'relu': ('in_bytes',),
    'pool': ('in_bytes', 'out_bytes'),
    'lrn': ('in_bytes',),
    'dropout': ('in_bytes',),
    'fc': ('in_bytes', 'out_bytes'),
    'flatten': ('in_bytes',),
    'model_load': ('model_bytes',),
}
# The paper's layer types (single-layer stages keep Table I's models).
PAPER_TYPES = frozenset(VARIABLES) - {'model_load'}
# Stages that are not one bare layer of a paper type: FLOPs and bytes.
STAGE_VARIABLES: dict[str, tuple[str, ...]] = {
    'conv_fused': ('flops', 'in_bytes', 'out_bytes', 'param_bytes'),
    'conv_dw': ('flops', 'in_bytes', 'out_bytes'),
    'block_residual': ('flops', 'in_bytes', 'out_bytes', 'param_bytes'),
    'block_inverted': ('flops', 'in_bytes', 'param_bytes'),
    'block_inverted_se': ('flops', 'in_bytes', 'param_bytes'),
    'block_se': ('in_bytes', 'param_bytes'),
    'adaptive_pool': ('in_bytes', 'out_bytes'),
    'fc_fused': ('flops', 'in_bytes', 'out_bytes'),
}
ALL_VARIABLES: dict[str, tuple[str, ...]] = {**VARIABLES, **STAGE_VARIABLES}
ROLES = ('device', 'edge')
# A codec's encoding (device) or decoding (edge) time is regressed on the size
# of what it codes, uncoded: float32 bytes of an activation, uint8 bytes of
# the input frame's pixels (pixels, JPEG).
CODEC_VARIABLES = ('raw_bytes',)
# A variable beyond this factor of the fitted range counts as far outside it.
RANGE_FACTOR = 2.0


class ProfileError(ValueError):
    """A profile that cannot be used; the text names the file and the problem."""


def stage_key(info: LayerInfo) -> str:
    """The key of the regression that predicts a stage (module docstring).

    A stage of one layer of a paper type keeps the paper's type (a card
    without ``ops`` counts as one layer of its type); otherwise the key says
    what the stage is made of. Keys no profile can have (an unknown block)
    are returned as they are, for ``Profile.require`` to name.
    """
    ops = list(info.ops) or [info.type]
    kind = info.type
    if kind in PAPER_TYPES and ops == [kind]:
        return kind
    if kind == 'block':
        if 'conv_dw' in ops and 'add' in ops:
            return 'block_inverted_se' if 'mul' in ops else 'block_inverted'
        if 'add' in ops and 'mul' not in ops and 'concat' not in ops and \
                not any(op.startswith('conv_') for op in ops):
            return 'block_residual'
        if 'mul' in ops and 'adaptive_pool' in ops and 'add' not in ops and \
                'conv_dw' not in ops:
            return 'block_se'
        return 'block'
    if kind == 'conv':
        return 'conv_fused'
    if kind in ('conv_dw', 'adaptive_pool') and not any(
            op in ('add', 'mul', 'concat') for op in ops):
        return kind
    if kind == 'fc':
        return 'fc_fused'
    if kind in PAPER_TYPES:
        return f'{kind}_fused'  # a paper type with more merged in: no model
    return kind


def layer_variables(info: LayerInfo) -> tuple[float, ...]:
    """The independent variables of one stage's regression (Table I's for the
    paper's layer types)."""
    key = stage_key(info)
    values = {
        'in_bytes': float(info.in_bytes),
        'out_bytes': float(info.out_bytes),
        'filter_term': (info.filter_size / info.stride) ** 2 * info.num_filters
        if key == 'conv' else 0.0,
        'flops': float(info.flops),
        'param_bytes': float(info.param_bytes),
    }
    return tuple(values[v] for v in ALL_VARIABLES.get(key, ()))


@dataclass
class LayerModel:
    """y = intercept + sum(coef * x), in ms, for one layer type."""

    variables: list[str]
    coef: list[float]
    intercept: float
    r2: float = float('nan')
    samples: int = 0
    ranges: dict[str, list[float]] = field(default_factory=dict)

    def predict(self, x: Sequence[float] | np.ndarray) -> np.ndarray:
        """Clamped prediction for one row of variables or a matrix of rows."""
        x = np.asarray(x, dtype=np.float64)
        y = x @ np.asarray(self.coef, dtype=np.float64) + self.intercept
        return np.maximum(y, 0.0)

    def outside(self, x: Sequence[float]) -> list[str]:
        """Variables of x far outside the fitted range (empty when inside)."""
        far = []
        for name, value in zip(self.variables, x, strict=True):
            low, high = self.ranges.get(name, (None, None))
            if low is None:
                continue
            if value > RANGE_FACTOR * high or value < low / RANGE_FACTOR:
                far.append(f'{name}={value:g} (fitted on {low:g}..{high:g})')
        return far


def fit_layer_model(x: np.ndarray, y: np.ndarray, variables: Sequence[str],
                    positive: bool = False) -> LayerModel:
    """Linear regression (scikit-learn) of latency y (ms) on x.

    Least squares on the *relative* error (sample weights 1/y^2): a network
    has many small layers and a few big ones, and an absolute fit lets the
    big configurations of the sweep set the intercept every small layer
    pays. R^2 is reported unweighted. ``positive``: coefficients and
    intercept >= 0 (the stage keys' FLOPs and bytes, which are correlated:
    an unconstrained fit trades one against another and extrapolates badly,
    and no stage takes less than nothing).
    """
    from sklearn.linear_model import LinearRegression
    from sklearn.metrics import r2_score

    x = np.asarray(x, dtype=np.float64).reshape(len(y), len(variables))
    y = np.asarray(y, dtype=np.float64)
    if len(y) < len(variables) + 1:
        raise ProfileError(f'{len(y)} samples cannot fit {len(variables)} variables')
    weights = 1.0 / np.maximum(y, 1e-6) ** 2
    if positive:  # the intercept as one more non-negative coefficient
        reg = LinearRegression(positive=True, fit_intercept=False).fit(
            np.hstack([x, np.ones((len(y), 1))]), y, sample_weight=weights)
        coef, intercept = reg.coef_[:-1], reg.coef_[-1]
    else:
        reg = LinearRegression().fit(x, y, sample_weight=weights)
        coef, intercept = reg.coef_, reg.intercept_
    return LayerModel(
        variables=list(variables), coef=[float(c) for c in coef],
        intercept=float(intercept), r2=float(r2_score(y, x @ coef + intercept)), samples=len(y),
        ranges={v: [float(x[:, i].min()), float(x[:, i].max())]
                for i, v in enumerate(variables)})


def machine_facts(threads: int | None = None) -> dict[str, Any]:
    """CPU, threads and library versions of the machine profiled."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'):
                cpu = line.split(':', 1)[1].strip()
                break
    except OSError:
        pass
    return {'cpu': cpu, 'machine': platform.machine(), 'threads': threads or
            torch.get_num_threads(), 'torch': str(torch.__version__),
            'python': platform.python_version(), 'host': platform.node()}


def card_stage_keys(card: ModelCard) -> list[str]:
    """The stage keys every exit of ``card`` needs a latency model for."""
    return sorted({stage_key(li) for e in card.exits for li in e.layers})


@dataclass
class Profile:
    """The latency models of one machine in one role."""

    name: str
    role: str
    source: str
    machine: dict[str, Any]
    layers: dict[str, LayerModel]
    notes: str = ''
    # Link codecs (edgent_ros.codec_names): a device profile's are encoding
    # times, an edge profile's decoding times, ms, each regressed on the
    # bytes of what is coded before coding (CODEC_VARIABLES). ``raw`` costs
    # nothing beyond what every frame pays and has no model.
    codecs: dict[str, LayerModel] = field(default_factory=dict)
    # Whole tails measured on the machine (an edge profile, made with
    # edgent-profile --whole-tails): model name -> exit -> ms of layers
    # [p, N) for p = 0..N-1. Per-layer sums miss what a GPU fuses and
    # launches (nn-Meter); a model with its tails here is timed by them.
    tails: dict[str, dict[int, list[float]]] = field(default_factory=dict)

    def require(self, types: Sequence[str], where: str = '') -> None:
        """Refuse a profile that lacks a layer type the model uses."""
        missing = sorted(set(types) - set(self.layers))
        if missing:
            raise ProfileError(f'profile {self.name!r}{where} has no latency model for layer '
                               f"type(s) {', '.join(missing)} that the model uses")

    def predict(self, infos: Sequence[LayerInfo]) -> np.ndarray:
        """Predicted latency (ms) of each layer (stage)."""
        self.require([stage_key(i) for i in infos])
        return np.array([float(self.layers[stage_key(i)].predict(layer_variables(i)))
                         for i in infos])

    def outside(self, infos: Sequence[LayerInfo]) -> list[str]:
        """Warnings for layers whose variables lie far outside the fitted ranges."""
        warnings = []
        for info in infos:
            far = self.layers[stage_key(info)].outside(layer_variables(info))
            if far:
                warnings.append(f'{info.name}: ' + ', '.join(far))
        return warnings

    def slowed(self, factor: float) -> Profile:
        """This profile for a CPU ``factor`` times slower (every layer's latency
        times factor): the profile of a device emulated with
        ``CoInferenceModel(slowdown=factor)``. Model loading is not slowed."""
        if not (math.isfinite(factor) and factor >= 1.0):
            raise ProfileError(f'a slowdown must be a number >= 1, got {factor}')
        layers = {kind: lm if kind == 'model_load' else replace(
            lm, coef=[c * factor for c in lm.coef], intercept=lm.intercept * factor)
            for kind, lm in self.layers.items()}
        machine = {**self.machine, 'emulated_slowdown': factor}
        codecs = {c: replace(lm, coef=[v * factor for v in lm.coef],
                             intercept=lm.intercept * factor) for c, lm in self.codecs.items()}
        return replace(self, layers=layers, machine=machine, codecs=codecs,
                       notes=(self.notes + ' ' if self.notes else '') +
                       f'Layer latencies x{factor:g}: an emulated CPU {factor:g} times slower.')

    def native(self) -> Profile:
        """The profile of the machine itself, undoing ``slowed`` (every layer's
        latency divided by ``machine.emulated_slowdown``); itself if not slowed."""
        factor = float(self.machine.get('emulated_slowdown', 1.0) or 1.0)
        if factor == 1.0:
            return self
        layers = {kind: lm if kind == 'model_load' else replace(
            lm, coef=[c / factor for c in lm.coef], intercept=lm.intercept / factor)
            for kind, lm in self.layers.items()}
        machine = {k: v for k, v in self.machine.items() if k != 'emulated_slowdown'}
        codecs = {c: replace(lm, coef=[v / factor for v in lm.coef],
                             intercept=lm.intercept / factor) for c, lm in self.codecs.items()}
        return replace(self, layers=layers, machine=machine, codecs=codecs,
                       notes=(self.notes + ' ' if self.notes else '') +
                       f'Layer latencies /{factor:g}: the measured CPU, not emulated.')

    def missing_for(self, card: ModelCard) -> list[str]:
        """The stage keys of ``card`` this profile has no model for (empty: all)."""
        return sorted(set(card_stage_keys(card)) - set(self.layers))

    def codec_ms(self, codec: str, raw_bytes: int) -> float | None:
        """Predicted encoding (device) or decoding (edge) time of ``codec`` for
        ``raw_bytes`` uncoded bytes, ms; 0 for raw and for nothing sent; None
        when the profile has no model for it."""
        if codec in (RAW, NONE):
            return 0.0
        lm = self.codecs.get(codec)
        return None if lm is None else float(lm.predict([float(raw_bytes)]))

    def with_codecs(self, other: Profile) -> Profile:
        """This profile with ``other``'s codec models for the codecs it has
        none of (the paper's Table II profiles have none), saying so in notes."""
        borrowed = {c: lm for c, lm in other.codecs.items() if c not in self.codecs}
        if not borrowed:
            return self
        return replace(self, codecs={**self.codecs, **borrowed},
                       notes=(self.notes + ' ' if self.notes else '') +
                       f"Codec times of {', '.join(borrowed)} from profile {other.name}.")

    def model_load_ms(self, model_bytes: int) -> float | None:
        lm = self.layers.get('model_load')
        return None if lm is None else float(lm.predict([float(model_bytes)]))

    def to_dict(self) -> dict[str, Any]:
        return {'name': self.name, 'role': self.role, 'source': self.source,
                'machine': self.machine, 'notes': self.notes,
                'layers': {t: asdict(m) for t, m in self.layers.items()},
                **({'codecs': {c: asdict(m) for c, m in self.codecs.items()}}
                   if self.codecs else {}),
                **({'tails': {name: {int(e): [float(v) for v in ms] for e, ms in by.items()}
                              for name, by in self.tails.items()}} if self.tails else {})}

    def save(self, path: Path | str) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False, width=100))
        return path


def read_model(path: Path, what: str, spec: object, variables: Sequence[str]) -> LayerModel:
    """One regression of a profile YAML, refused (ProfileError naming ``what``)
    unless it regresses on exactly ``variables`` with finite coefficients."""
    try:
        model = LayerModel(**spec)
    except TypeError as exc:
        raise ProfileError(f'{path}: {what}: {exc}') from None
    if list(model.variables) != list(variables) or len(model.coef) != len(model.variables):
        raise ProfileError(f'{path}: {what} must regress on {list(variables)}, found '
                           f'{model.variables} with {len(model.coef)} coefficients')
    if not all(isinstance(v, (int, float)) and np.isfinite(v)
               for v in [*model.coef, model.intercept]):
        raise ProfileError(f'{path}: {what} has non-finite coefficients')
    return model


def load_profile(path: Path | str) -> Profile:
    """Read a profile YAML, checking every field."""
    path = Path(path)
    raw = read_yaml_mapping(path, 'profile', ProfileError)
    if not isinstance(raw.get('layers'), dict):
        raise ProfileError(f'{path}: not a latency profile (no "layers" mapping)')
    layers = {}
    for kind, spec in raw['layers'].items():
        if kind not in ALL_VARIABLES:
            raise ProfileError(f'{path}: unknown layer type {kind!r} '
                               f'(known: {", ".join(ALL_VARIABLES)})')
        model = read_model(path, f'layer type {kind}', spec, ALL_VARIABLES[kind])
        layers[kind] = model
    codecs = {}
    raw_codecs = raw.get('codecs') or {}
    if not isinstance(raw_codecs, dict):
        raise ProfileError(f'{path}: "codecs" must be a mapping of codec to model')
    for codec, spec in raw_codecs.items():
        if codec not in CODECS or codec == RAW:
            raise ProfileError(f'{path}: unknown codec {codec!r} (known: '
                               f'{", ".join(c for c in CODECS if c != RAW)})')
        model = read_model(path, f'codec {codec}', spec, CODEC_VARIABLES)
        codecs[codec] = model
    role = raw.get('role')
    if role not in ROLES:
        raise ProfileError(f'{path}: role must be one of {ROLES}, found {role!r}')
    return Profile(name=str(raw.get('name', path.stem)), role=role,
                   source=str(raw.get('source', '')), machine=dict(raw.get('machine') or {}),
                   layers=layers, notes=str(raw.get('notes', '')), codecs=codecs,
                   tails=read_tails(path, raw.get('tails')))


def read_tails(path: Path, raw: object) -> dict[str, dict[int, list[float]]]:
    """A profile's ``tails`` section, checked: model -> exit -> finite ms >= 0."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ProfileError(f'{path}: "tails" must map model names to exits')
    tails: dict[str, dict[int, list[float]]] = {}
    for name, by_exit in raw.items():
        if not isinstance(by_exit, dict):
            raise ProfileError(f'{path}: tails of {name!r} must map exits to lists of ms')
        tails[str(name)] = {}
        for exit_point, ms in by_exit.items():
            if not (isinstance(exit_point, int) and isinstance(ms, list) and ms and
                    all(isinstance(v, (int, float)) and math.isfinite(v) and v >= 0
                        for v in ms)):
                raise ProfileError(f'{path}: tails of {name!r}, exit {exit_point!r}: need a '
                                   'non-empty list of finite times >= 0 ms')
            tails[str(name)][exit_point] = [float(v) for v in ms]
    return tails


def tail_layers(tails: Sequence[float]) -> np.ndarray:
    """Whole-tail times (ms of layers [p, N), p = 0..N-1) as per-layer times
    whose suffix sums give them back, made monotone first (a tail with more
    layers never takes less; measurement noise can say otherwise)."""
    t = np.asarray(tails, dtype=np.float64)
    t = np.maximum.accumulate(t[::-1])[::-1]
    return t - np.concatenate([t[1:], [0.0]])


def resolve_profile_path(name_or_path: str | Path) -> Path:
    """A profile from a path, or from a bare name in the package's config/profiles/."""
    try:
        return resolve_in_package(name_or_path, 'config/profiles', 'profile')
    except FileNotFoundError as exc:
        raise ProfileError(str(exc)) from None


AUTO = 'auto'
# What ``auto`` tries, in order: the paper's Table II profiles (they know Table
# I's layer types only), then this project's CI host (every stage key of the
# built-in architectures; the device one in the host's own CPU time, not slowed).
AUTO_CHOICES = {'device': ('paper_pi3_device', 'ci_host_device_native'),
                'edge': ('paper_desktop_edge', 'ci_host_edge')}


def auto_profile(role: str, card: ModelCard, choices: Sequence[str] | None = None
                 ) -> tuple[Profile, list[str]]:
    """The first of ``choices`` (default ``AUTO_CHOICES[role]``) with a model
    for every stage of ``card``, and what the ones passed over lacked
    (``name: types``). A ProfileError if none has them all, naming the
    command that makes one."""
    passed: list[str] = []
    for name in AUTO_CHOICES[role] if choices is None else choices:
        profile = load_profile(resolve_profile_path(name))
        missing = profile.missing_for(card)
        if not missing:
            return profile, passed
        passed.append(f"{name}: {', '.join(missing)}")
    raise ProfileError(
        f'no shipped {role} profile predicts every stage of {card.name} ({"; ".join(passed)} '
        f'missing); make one on the {role}: edgent-profile --role {role} --model {card.name} '
        f'--out {role}.yaml, then {role}_profile:=<that file>')


# Where a profile without codec timings (the paper's Table II) borrows them.
CODEC_FALLBACK = {'device': 'ci_host_device_native', 'edge': 'ci_host_edge'}


def with_codec_fallback(profile: Profile) -> tuple[Profile, list[str]]:
    """``profile`` with the CI host's codec timings for the codecs it cannot
    time, and their names (empty: it had them all)."""
    missing = [c for c in CODECS if c != RAW and c not in profile.codecs]
    if not missing:
        return profile, []
    other = load_profile(resolve_profile_path(CODEC_FALLBACK[profile.role]))
    borrowed = [c for c in missing if c in other.codecs]
    return profile.with_codecs(other), borrowed


@dataclass(frozen=True)
class CodecCost:
    """One coded configuration of an exit: what crosses at ``partition``
    coded with ``codec``, its held-out accuracy, its payload bytes (a high
    percentile for content-dependent codecs) and the predicted encoding
    (device) and decoding (edge) time, ms."""

    partition: int
    codec: str
    accuracy: float
    upload_bytes: int
    encode_ms: float = 0.0
    decode_ms: float = 0.0


@dataclass
class ExitArrays:
    """Per-exit arrays, index p = partition point 0..N (device runs [0, p))."""

    device_prefix: np.ndarray   # sum of device ms of layers [0, p)
    edge_suffix: np.ndarray     # sum of edge ms of layers [p, N)
    upload_bytes: np.ndarray    # bytes sent at p (input for p=0, 0 for p=N)
    result_bytes: int           # the logits returned by the edge
    device_layers: np.ndarray
    edge_layers: np.ndarray
    codecs: list[CodecCost] = field(default_factory=list)  # raw is implied


class SubModelLatency:
    """Predicted latency of every (exit, partition) of a model on a device-edge pair."""

    def __init__(self, card: ModelCard, device: Profile, edge: Profile) -> None:
        if device.role != 'device' or edge.role != 'edge':
            raise ProfileError(f'need a device and an edge profile, got {device.role!r} '
                               f'({device.name}) and {edge.role!r} ({edge.name})')
        types = card_stage_keys(card)
        device.require(types, ' (device)')
        measured = edge.tails.get(card.name, {})
        whole = {e.exit_point for e in card.exits
                 if len(measured.get(e.exit_point, ())) == len(e.layers)}
        by_layer = [e for e in card.exits if e.exit_point not in whole]
        edge.require(sorted({stage_key(i) for e in by_layer for i in e.layers}), ' (edge)')
        self.card = card
        self.device = device
        self.edge = edge
        self.whole_tails = sorted(whole)
        self.warnings = [f'device {w}' for e in card.exits for w in device.outside(e.layers)]
        self.warnings += [f'edge {w}' for e in by_layer for w in edge.outside(e.layers)]
        self.exits: dict[int, ExitArrays] = {}
        for e in card.exits:
            ed = device.predict(e.layers)
            es = tail_layers(measured[e.exit_point]) if e.exit_point in whole else \
                edge.predict(e.layers)
            n = len(e.layers)
            upload = np.zeros(n + 1, dtype=np.int64)
            upload[0] = card.input_bytes
            upload[1:n] = [li.out_bytes for li in e.layers[:n - 1]]
            self.exits[e.exit_point] = ExitArrays(
                device_prefix=np.concatenate([[0.0], np.cumsum(ed)]),
                edge_suffix=np.concatenate([np.cumsum(es[::-1])[::-1], [0.0]]),
                upload_bytes=upload, result_bytes=int(e.layers[-1].out_bytes),
                device_layers=ed, edge_layers=es, codecs=self._codecs(e))

    def _codecs(self, e: ExitInfo) -> list[CodecCost]:
        """The exit's coded configurations the card measured and both
        profiles can time (lossless ``pixels`` needs no measurement)."""
        card = self.card
        c, h, w = card.input_shape
        pixels = h * w * c
        measured = {(m.partition, m.codec): m for m in card.codecs
                    if m.exit_point == e.exit_point}
        out = []
        for p in range(len(e.layers)):
            for codec in (INPUT_CODECS if p == 0 else ACTIVATION_CODECS):
                if codec == RAW:
                    continue
                raw_bytes = pixels if p == 0 else e.layers[p - 1].out_bytes
                entry = measured.get((p, codec))
                if codec in LOSSLESS:
                    accuracy, size = e.accuracy, entry.bytes if entry else raw_bytes
                elif entry is None:
                    continue
                else:
                    # Coding loses information: a lossy configuration measured
                    # above raw is held-out noise (one image in 360 is 0.28
                    # points), not a better plan; it ties with raw instead.
                    accuracy, size = min(entry.accuracy, e.accuracy), entry.bytes
                encode = self.device.codec_ms(codec, raw_bytes)
                decode = self.edge.codec_ms(codec, raw_bytes)
                if encode is None or decode is None:
                    who = self.device.name if encode is None else self.edge.name
                    note = f'profile {who} cannot time codec {codec}: not planned'
                    if note not in self.warnings:
                        self.warnings.append(note)
                    continue
                out.append(CodecCost(p, codec, float(accuracy), int(size), encode, decode))
        return out

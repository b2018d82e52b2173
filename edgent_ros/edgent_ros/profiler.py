"""edgent-profile: time each layer type on this machine and fit the latency models.

For every layer type of the paper's Table I (plus flatten) the profiler times
real torch layers over a sweep of the type's independent variables (the
model's own layer configurations and random ones within 0.5-2x of them, so
the linear fit is tight where it is used; without a model, a wide random
sweep), takes the
median of repeated samples after warm-up, and fits one linear regression per
type (``edgent_ros.latency``). It also times model loading over model sizes.

How layers are timed (``time_jobs``): a layer timed alone, back to back,
runs with its weights and input hot in cache and its Python call path warm,
and comes out 20-50% faster than the same layer inside a running network.
So the profiler times all configurations in *passes*, each pass running every
configuration once in a fresh random order, so each layer follows unrelated
work as it does in a network. Per call it reads the process CPU time; the
pass's wall time over its CPU time (about 1 unthrottled, about 1/quota under
a CPU quota, where the stalls fall between and inside calls) scales that to
wall time. The result per configuration is the median over passes. Whole
calls that take long enough (model loading, whole sub-models) are timed
back to back by ``time_call`` with enough calls per sample to span many
quota periods.

Stages that are not one bare layer of the paper's types (``latency.stage_key``:
a convolution with its batch norm and activation, a residual or inverted
residual block, squeeze-excitation, adaptive pooling, a linear layer with its
activation) are timed *whole* and *in a chain*, as a network runs them: each
sample is the ``torch.fx`` stage ``stages.split`` builds from a module (merged
ops and the stage's call overhead are in its time), timed from the clock
read before it to the one before the next stage of its chain. Timed alone
instead, a stage's time depends on what ran before it: back to back it is
hot, after unrelated work it pays a cold start (docs/latency.md). The chains
are (1) the models themselves rebuilt at other widths (every channel count
times 0.5-2) and input sizes (times 0.5-1.5), every exit, and (2) per key,
synthetic stages built from ``edgent_ros.architectures``' blocks with random
channels, sizes, kernels, strides and activations near the models' stages
(anywhere in a wide range without a model), each after a convolution that
makes its input and before a global pooling. The models' single layers of
the paper's types in (1) (ResNet's max pooling, the flatten and FC layers)
are recorded too and join the paper's sweep of their type, so that their
fit also knows what they cost among the stages. ``Settings.holdout`` keeps the
models' own layers and stages at their own size out of every fit, so that an
evaluation on them is honest; without it (the default) the models' own
stages are timed too, as the paper's sweep includes the model's own layers.

The link codecs (``edgent_ros.payload_codec``; ``codec_sweep``) are timed as
the paper's layers are, in shuffled passes, on ReLU-like activations of 4 KB
to 4 MB and natural-ish frames of 32x32 to 640x480: a device profile gets
their encoding times, an edge profile their decoding times (an input's
normalisation to the network's float32 input included), each regressed on
the uncoded bytes (``Profile.codecs``). ``--codecs-only --from PROFILE``
adds them to an existing profile without re-measuring its layers.
"""

from __future__ import annotations

import argparse
import copy
import functools
import io
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from edgent_ros import architectures as arch
from edgent_ros import model as m
from edgent_ros import torch_device
from edgent_ros.allocator import pin_allocator
from edgent_ros.latency import (
    ALL_VARIABLES,
    CODEC_VARIABLES,
    PAPER_TYPES,
    STAGE_VARIABLES,
    VARIABLES,
    LayerModel,
    Profile,
    ProfileError,
    fit_layer_model,
    layer_variables,
    load_profile,
    machine_facts,
    resolve_profile_path,
    stage_key,
)
from edgent_ros.stages import Stage, StageError, split


@dataclass
class Settings:
    repeats: int = 31
    warmup: int = 3
    min_sample_ms: float = 20.0
    random_configs: int = 24
    seed: int = 0
    # Stage keys: variants of each of the models' own stages (other widths
    # and input sizes) in the sweep.
    stage_variants: int = 6
    # Leave the models' own layers and stages at their own size out of every
    # sweep (an honest evaluation on them; the AlexNet's profiles keep them).
    holdout: bool = False
    # Stage chains: sleep this long before each run, as a device that runs a
    # frame and then waits for the next (its caches go cold meanwhile).
    idle_ms: float = 0.0
    # CPU time only, not scaled to wall time: what an emulated device
    # (inference.CoInferenceModel(slowdown=k)) multiplies by k; other
    # processes taking the CPU then do not count.
    cpu_time: bool = False
    # Link codecs: how many of the activation shapes (CODEC_SHAPES) and of
    # the input frame sizes (CODEC_FRAMES) to time (spread over each range).
    codec_sizes: int = 12


# The working set a chunk of timed layers may have: about that of the
# default model (2.8 MB of weights) and its activations.
CHUNK_BYTES = 8 << 20

QUICK = Settings(repeats=5, warmup=1, min_sample_ms=2.0, random_configs=4, stage_variants=2,
                 codec_sizes=3)


def time_call(fn: Callable[[], object], settings: Settings) -> float:
    """Median wall milliseconds of one call of fn, timed back to back."""
    for _ in range(settings.warmup):
        fn()
    # Calls per sample so that a sample costs at least min_sample_ms of CPU
    # (CPU, not wall: under a quota one call's wall time may be a stall).
    start = time.process_time()
    fn()
    once = max(time.process_time() - start, 1e-6)
    calls = max(1, int(np.ceil(settings.min_sample_ms / 1e3 / once)))
    samples = []
    for _ in range(settings.repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        samples.append((time.perf_counter() - start) / calls * 1e3)
    return statistics.median(samples)


def time_jobs(jobs: list[Callable[[], object]], settings: Settings,
              footprints: list[int] | None = None, progress: bool = False,
              desc: str = 'timing', pause_ms: float = 0.0) -> list[float]:
    """Wall milliseconds of one call of each job, timed in shuffled passes.

    Jobs are grouped into chunks whose footprints (weights and activations,
    bytes) add up to about ``CHUNK_BYTES``, the working set of a small
    network; each chunk runs ``repeats`` passes in a fresh random order. A
    job's time is the median of its per-call CPU times, scaled by the chunk's
    wall time over its CPU time (stalls under a CPU quota included). With
    ``pause_ms``, each timed call follows that long asleep (as a node's
    thread wakes for a frame, its caches and the core's state gone cold),
    the sleep in neither time.
    """
    rng = np.random.default_rng(settings.seed)
    clock = time.process_time_ns
    footprints = footprints or [0] * len(jobs)
    chunks: list[list[int]] = [[]]
    size = 0
    for j in rng.permutation(len(jobs)):
        if chunks[-1] and size + footprints[j] > CHUNK_BYTES:
            chunks.append([])
            size = 0
        chunks[-1].append(int(j))
        size += footprints[j]
    result = [0.0] * len(jobs)
    for chunk in tqdm(chunks, desc=desc, unit='chunk', disable=not progress,
                      file=sys.stderr, mininterval=1.0):
        for _ in range(settings.warmup):
            for j in chunk:
                jobs[j]()
        samples: dict[int, list[int]] = {j: [] for j in chunk}
        wall = cpu = 0
        for _ in range(settings.repeats):
            for j in rng.permutation(chunk):
                if pause_ms > 0:
                    time.sleep(pause_ms / 1e3)
                wall0, start = time.perf_counter_ns(), clock()
                jobs[j]()
                took = clock() - start
                wall += time.perf_counter_ns() - wall0
                cpu += took
                samples[j].append(took)
        scale = 1.0 if settings.cpu_time else wall / max(cpu, 1)
        for j in chunk:
            result[j] = statistics.median(samples[j]) * scale / 1e6
    return result


def footprint(layer: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    """Bytes a layer touches: its parameters, input and output."""
    params = sum(p.numel() * p.element_size() for p in layer.parameters())
    return params + x.numel() * x.element_size() + y.numel() * y.element_size()


def layer_job(layer: nn.Module, x: torch.Tensor) -> Callable[[], object]:
    """A call of one layer's forward pass on x (time it under torch.inference_mode)."""
    layer.eval()
    return functools.partial(layer, x)


def _describe(layer: nn.Module, x: torch.Tensor) -> m.LayerInfo:
    return m.module_info(layer, x)


SCALES = (0.5, 0.75, 1.5, 2.0)


def _near(rng: np.random.Generator, value: int, low: int = 1) -> int:
    """A value near one of the model's: scaled by 0.5-2x."""
    return max(low, round(value * float(rng.choice(SCALES))))


def _model_layers(card: Sequence[m.LayerInfo] | None, kinds: set[str]) -> list[m.LayerInfo]:
    """The models' distinct layers (stages) whose key is one of ``kinds``."""
    if not card:
        return []
    return sorted({(li.type, tuple(li.in_shape), li.filter_size, li.stride, li.num_filters,
                    li.in_features, li.out_features): li
                   for li in card if stage_key(li) in kinds}.values(),
                  key=lambda li: (li.type, li.in_bytes, li.out_bytes))


def _conv_configs(card: Sequence[m.LayerInfo] | None, rng: np.random.Generator,
                  n: int, holdout: bool = False) -> Iterator[tuple[int, int, int, int, int]]:
    """(in_channels, size, filter, stride, filters): the model's convolutions,
    and n more near them (or anywhere, without a model)."""
    layers = _model_layers(card, {'conv'})
    seen = {(li.in_shape[0], li.in_shape[1], li.filter_size, li.stride, li.num_filters)
            for li in layers}
    for _ in range(n):
        if layers:
            li = layers[int(rng.integers(len(layers)))]
            seen.add((_near(rng, li.in_shape[0]), _near(rng, li.in_shape[1], 2),
                      li.filter_size, li.stride, _near(rng, li.num_filters)))
        else:
            seen.add((int(rng.choice([3, 8, 16, 32, 64, 96, 128])),
                      int(rng.choice([4, 8, 16, 32])), int(rng.choice([1, 3, 5])),
                      int(rng.choice([1, 1, 2])), int(rng.choice([8, 16, 32, 64, 96, 128]))))
    if holdout:
        seen -= {(li.in_shape[0], li.in_shape[1], li.filter_size, li.stride, li.num_filters)
                 for li in layers}
    yield from sorted(seen)


def _shape_configs(card: Sequence[m.LayerInfo] | None, kinds: set[str],
                   rng: np.random.Generator,
                   n: int, holdout: bool = False) -> Iterator[tuple[int, ...]]:
    """Input shapes (C, H, W) or (F,): the model's, and n more near them."""
    layers = _model_layers(card, kinds)
    seen = {tuple(li.in_shape) for li in layers}
    for _ in range(n):
        if layers:
            shape = layers[int(rng.integers(len(layers)))].in_shape
            if len(shape) == 3:
                size = _near(rng, shape[1], 2)
                seen.add((_near(rng, shape[0]), size, size))
            else:
                seen.add((_near(rng, shape[0]),))
        else:
            size = int(rng.choice([2, 4, 8, 16, 32]))
            seen.add((int(rng.choice([3, 8, 16, 32, 64, 96, 128])), size, size))
    if holdout:
        seen -= {tuple(li.in_shape) for li in layers}
    yield from sorted(seen)


def _fc_configs(card: Sequence[m.LayerInfo] | None, rng: np.random.Generator,
                n: int, holdout: bool = False) -> Iterator[tuple[int, int]]:
    """(in_features, out_features): the model's, and n more near them."""
    layers = _model_layers(card, {'fc'})
    seen = {(li.in_features, li.out_features) for li in layers}
    for _ in range(n):
        if layers:
            li = layers[int(rng.integers(len(layers)))]
            seen.add((_near(rng, li.in_features), _near(rng, li.out_features)))
        else:
            seen.add((int(rng.choice([32, 128, 256, 512, 1024, 2048, 4096])),
                      int(rng.choice([10, 32, 64, 128, 256, 512]))))
    if holdout:
        seen -= {(li.in_features, li.out_features) for li in layers}
    yield from sorted(seen)


Results = dict[str, list[tuple[tuple[float, ...], float]]]


def sweep(card: m.ModelCard | Sequence[m.ModelCard] | None, settings: Settings,
          progress: bool = True, *, nets: Sequence[m.BranchyNetwork] = (),
          all_types: bool = False) -> Results:
    """Time every layer type and stage key over its sweep: {key: [(variables, ms), ...]}.

    ``card`` (one or several) and ``nets`` are the models the sweep is built
    around. Table I's types are always swept (near the models' layers of
    that type, else over a wide range); a stage key only where a model has
    such stages, or over a wide range for every key with ``all_types`` or
    without any model.
    """
    cards = [] if card is None else [card] if isinstance(card, m.ModelCard) else list(card)
    infos = [li for c in cards for e in c.exits for li in e.layers]
    infos += [li for net in nets for e in range(1, net.num_exits + 1)
              for li in m.layer_infos(net, e)]
    results: Results = {t: [] for t in VARIABLES}
    _paper_sweep(infos, settings, results, progress)
    models = list(nets) + [m.build(c) for c in cards
                           if any(stage_key(li) in STAGE_VARIABLES
                                  for e in c.exits for li in e.layers)]
    keys = {stage_key(li) for li in infos} & set(STAGE_VARIABLES)
    if all_types or not (cards or nets):
        keys = set(STAGE_VARIABLES)
    staged = stage_sweep(models, [k for k in STAGE_VARIABLES if k in keys], settings, progress)
    for key, rows in staged.items():
        results.setdefault(key, []).extend(rows)
    return results


def _paper_sweep(card: list[m.LayerInfo], settings: Settings, results: Results,
                 progress: bool) -> None:
    """Table I's layer types, and model loading (as the paper profiles them)."""
    rng = np.random.default_rng(settings.seed)
    n = settings.random_configs
    out = settings.holdout
    jobs: list[tuple[str, nn.Module, torch.Tensor]] = []
    for c, size, k, s, f in _conv_configs(card, rng, n, out):
        jobs.append(('conv', nn.Conv2d(c, f, k, stride=s, padding=k // 2),
                     torch.rand(1, c, size, size)))
    for shape in _shape_configs(card, {'relu'}, rng, n, out):
        jobs.append(('relu', nn.ReLU(), torch.rand(1, *shape)))
    for shape in _shape_configs(card, {'lrn'}, rng, n, out):
        if len(shape) == 3:
            jobs.append(('lrn', m._lrn(), torch.rand(1, *shape)))
    for shape in _shape_configs(card, {'dropout'}, rng, n, out):
        jobs.append(('dropout', nn.Dropout(0.5), torch.rand(1, *shape)))
    for shape in _shape_configs(card, {'flatten'}, rng, n, out):
        jobs.append(('flatten', nn.Flatten(), torch.rand(1, *shape)))
    for shape in _shape_configs(card, {'pool'}, rng, n, out):
        if len(shape) == 3:
            jobs.append(('pool', m._pool(), torch.rand(1, *shape)))
    for fin, fout in _fc_configs(card, rng, n, out):
        jobs.append(('fc', nn.Linear(fin, fout), torch.rand(1, fin)))
    with torch.inference_mode():
        sizes = [footprint(layer, x, layer(x)) for _, layer, x in jobs]
        times = time_jobs([layer_job(layer, x) for _, layer, x in jobs], settings,
                          footprints=sizes, progress=progress)
    for (kind, layer, x), ms in zip(jobs, times, strict=True):
        results[kind].append((layer_variables(_describe(layer, x)), ms))
    sizes_mb = [0.25, 1, 2, 4, 8] if settings.random_configs < 8 else \
        [0.1, 0.25, 0.5, 1, 2, 4, 8, 16]
    for mb in tqdm(sizes_mb, desc='model loading', unit='size', disable=not progress,
                   file=sys.stderr):
        results['model_load'].append(((mb * 1e6,), time_model_load(int(mb * 1e6), settings)))


# --- stage keys: stages timed whole ---------------------------------------------------

# Width (channel) and input-size factors of the models' own stages in the
# sweep, combinations up to MAX_GROWTH times the FLOPs (width x size <= 2).
WIDTHS = (0.5, 0.75, 1.0, 1.5, 2.0)
RESOLUTIONS = (0.5, 0.75, 1.0, 1.25, 1.5)
MAX_GROWTH = 2.0
# Chains timed together in shuffled passes (each after unrelated ones).
CHAINS_PER_CHUNK = 8
ACTIVATIONS: dict[str, type[nn.Module]] = {'relu': nn.ReLU, 'hardswish': nn.Hardswish}


@dataclass
class Chain:
    """Stages run one after another from ``x``, as a network runs them; the
    ``record``ed ones are samples of the sweep, the others context."""

    stages: list[Stage]
    infos: list[m.LayerInfo]
    record: list[bool]
    x: torch.Tensor
    origin: str  # 'model' (a model's own), 'variant' (rebuilt), 'synthetic'


def stage_signature(info: m.LayerInfo) -> tuple[object, ...]:
    """What makes two stages the same work: kind, ops, shapes, FLOPs, parameters."""
    return (stage_key(info), tuple(info.ops), tuple(info.in_shape), tuple(info.out_shape),
            info.flops, info.param_bytes, info.filter_size, info.stride)


def whole_stage(module: nn.Module, x: torch.Tensor) -> tuple[Stage, m.LayerInfo] | None:
    """``module`` as the one stage a network would run (elementwise ops merged
    into it) on ``x`` (batch 1), with its card facts; None when it is more
    than one stage or does not run on x."""
    module.eval()
    try:
        stages = split(nn.Sequential(module), x, merge_elementwise=True)
    except (StageError, RuntimeError):
        return None
    if len(stages) != 1:
        return None
    return stages[0], m.stage_info(0, 'sweep', stages[0])


def rescaled(module: nn.Module, width: float) -> nn.Module | None:
    """A copy of a stage's module with every channel count times ``width``
    (image channels, 3 or fewer, kept), fresh weights; None if it holds a
    layer that cannot be rescaled (a grouped, not depthwise, convolution, or
    a bare tensor). The same width keeps a chain of stages consistent."""
    def c(n: int) -> int:
        return n if n <= 3 else max(1, round(n * width))

    if isinstance(module, torch.fx.GraphModule) and \
            any(n.op == 'get_attr' for n in module.graph.nodes):
        return None
    clone = copy.deepcopy(module)
    for name, sub in list(clone.named_modules()):
        new: nn.Module
        if isinstance(sub, nn.Conv2d):
            if sub.groups not in (1, sub.in_channels):
                return None
            new = nn.Conv2d(c(sub.in_channels), c(sub.out_channels), sub.kernel_size,
                            sub.stride, sub.padding, sub.dilation,
                            groups=1 if sub.groups == 1 else c(sub.in_channels),
                            bias=sub.bias is not None)
        elif isinstance(sub, nn.BatchNorm2d):
            new = nn.BatchNorm2d(c(sub.num_features), eps=sub.eps, momentum=sub.momentum)
        elif isinstance(sub, nn.Linear):
            new = nn.Linear(c(sub.in_features), c(sub.out_features), bias=sub.bias is not None)
        else:
            continue
        if not name:
            return new.eval()
        parent, _, attr = name.rpartition('.')
        setattr(clone.get_submodule(parent) if parent else clone, attr, new)
    return clone.eval()


def _chain(modules: Sequence[nn.Module], x: torch.Tensor, record: Sequence[bool],
           origin: str) -> Chain | None:
    """Modules run one after another from x, each as one stage (None if one is not)."""
    stages, infos = [], []
    h = x
    with torch.no_grad():
        for module in modules:
            built = whole_stage(module, h)
            if built is None:
                return None
            stages.append(built[0])
            infos.append(built[1])
            h = built[0](h)
    return Chain(stages, infos, list(record), x, origin)


def variant_chains(net: m.BranchyNetwork, width: float, resolution: float,
                   keys: Sequence[str]) -> list[Chain]:
    """Every exit of ``net`` with every channel count times ``width`` and its
    input size times ``resolution``: the last exit whole, each earlier exit's
    head after the backbone stage it follows (as context). Stages of the
    stage keys are recorded."""
    shape = [net.input_shape[0]] + [max(1, round(v * resolution)) for v in net.input_shape[1:]]
    x = torch.rand(1, *shape)
    cache: dict[int, nn.Module | None] = {}

    def module(stage: Stage) -> nn.Module | None:
        if id(stage) not in cache:
            cache[id(stage)] = stage.module if width == 1.0 else rescaled(stage.module, width)
        return cache[id(stage)]

    full = net.stages(net.num_exits)
    modules = [module(s) for s in full]
    if any(mod is None for mod in modules):
        return []
    trunk = _chain([mod for mod in modules if mod is not None], x,
                   [True] * len(modules), 'model' if (width, resolution) == (1, 1) else 'variant')
    if trunk is None:
        return []
    chains = [trunk]
    with torch.no_grad():
        acts = [x]
        for stage in trunk.stages:
            acts.append(stage(acts[-1]))
    for e in range(1, net.num_exits):
        cut = net.branch_points[e - 1]
        head = [module(s) for s in net.head_stages[e - 1]]
        if any(mod is None for mod in head):
            continue
        chain = _chain([trunk.stages[cut - 1].module, *[h for h in head if h is not None]],
                       acts[cut - 1], [False] + [True] * len(head), trunk.origin)
        if chain is not None:
            chains.append(chain)
    for chain in chains:  # and the paper's types, as they run among the stages
        chain.record = [r and (stage_key(i) in keys or stage_key(i) in PAPER_TYPES)
                        for r, i in zip(chain.record, chain.infos, strict=True)]
    return chains


def _activation(ref: m.LayerInfo | None, rng: np.random.Generator,
                none_ok: bool = True) -> type[nn.Module] | None:
    """The reference stage's activation, else a random one (or none)."""
    if ref is not None:
        found = [ACTIVATIONS[op] for op in ref.ops if op in ACTIVATIONS]
        return found[0] if found else None
    choices: list[type[nn.Module] | None] = [nn.ReLU, nn.Hardswish]
    if none_ok:
        choices.append(None)
    return choices[int(rng.integers(len(choices)))]


def synthetic_module(key: str, ref: m.LayerInfo | None,
                     rng: np.random.Generator) -> tuple[nn.Module, list[int]]:
    """A module that is one stage of kind ``key``, built from
    ``edgent_ros.architectures``' blocks, with random sizes near the
    reference stage's (a wide range without one), and its input shape."""
    def pick(values: Sequence[float]) -> float:
        return values[int(rng.integers(len(values)))]

    def channels(value: int | None, wide: Sequence[int]) -> int:
        if value is None:
            return int(pick(wide))
        return value if value <= 3 else _near(rng, value)

    shape = list(ref.in_shape) if ref is not None else None
    c = channels(shape[0] if shape else None, (16, 24, 32, 48, 64, 96, 128, 256))
    size = _near(rng, shape[1], 2) if shape and len(shape) == 3 else \
        int(pick((7, 14, 28, 56)))
    if key == 'conv_fused':
        f = channels(ref.num_filters if ref else None, (16, 32, 64, 96, 128, 256, 576))
        k = ref.filter_size if ref and rng.random() < 0.5 else int(pick((1, 3, 5, 7)))
        s = ref.stride if ref and rng.random() < 0.5 else int(pick((1, 1, 2)))
        return arch.ConvBNAct(c, f, k, s, activation=_activation(ref, rng)), [c, size, size]
    if key == 'conv_dw':
        k = ref.filter_size if ref and rng.random() < 0.5 else int(pick((3, 5)))
        s = ref.stride if ref and rng.random() < 0.5 else int(pick((1, 2)))
        return (arch.ConvBNAct(c, c, k, s, groups=c, activation=_activation(ref, rng)),
                [c, size, size])
    if key == 'block_residual':
        down = rng.random() < 0.5
        return arch.BasicBlock(c, 2 * c if down else c, 2 if down else 1), [c, size, size]
    if key in ('block_inverted', 'block_inverted_se'):
        expanded = max(c + 1, round(c * pick((2.5, 3.0, 4.0, 4.5, 6.0))))
        act = _activation(None, rng, none_ok=False)
        assert act is not None
        return (arch.InvertedResidual(c, int(pick((3, 5))), expanded, c,
                                      key == 'block_inverted_se', act, 1), [c, size, size])
    if key == 'block_se':
        return arch.SqueezeExcitation(c, arch.make_divisible(c // 4)), [c, size, size]
    if key == 'adaptive_pool':
        return nn.AdaptiveAvgPool2d(1), [c, size, size]
    if key == 'fc_fused':
        fin = channels(ref.in_features if ref else None, (128, 256, 512, 576, 1024))
        fout = channels(ref.out_features if ref else None, (128, 256, 512, 1024, 1280))
        layers: list[nn.Module] = [nn.Linear(fin, fout)]
        ops = ref.ops[1:] if ref else ['hardswish', 'dropout'] if rng.random() < 0.5 \
            else ['relu']
        for op in ops:
            if op in ACTIVATIONS:
                layers.append(ACTIVATIONS[op]())
            elif op == 'dropout':
                layers.append(nn.Dropout(0.2))
        return nn.Sequential(*layers), [fin]
    raise ProfileError(f'no synthetic stage for key {key!r}')


def synthetic_chain(key: str, ref: m.LayerInfo | None, rng: np.random.Generator,
                    keys: Sequence[str]) -> Chain | None:
    """A synthetic stage of kind ``key`` (recorded) in a small network: after
    a stage that makes its input (a convolution from 3 channels, or a linear
    layer; context), and followed by global pooling where it gives a
    feature map (recorded as adaptive_pool when that key is swept)."""
    module, shape = synthetic_module(key, ref, rng)
    if len(shape) == 3:
        producer: nn.Module = arch.ConvBNAct(3, shape[0], 3, 1)
        x = torch.rand(1, 3, *shape[1:])
        modules = [producer, module]
        if key != 'adaptive_pool':
            modules.append(nn.AdaptiveAvgPool2d(1))
    else:
        producer = nn.Linear(64, shape[0])
        x = torch.rand(1, 64)
        modules = [producer, module]
    record = [False, True, 'adaptive_pool' in keys][:len(modules)]
    chain = _chain(modules, x, record, 'synthetic')
    if chain is None or stage_key(chain.infos[1]) != key:
        return None
    return chain


def model_stages(nets: Sequence[m.BranchyNetwork],
                 keys: Sequence[str]) -> dict[str, list[m.LayerInfo]]:
    """The models' distinct stages of each key."""
    found: dict[str, dict[tuple[object, ...], m.LayerInfo]] = {}
    for net in nets:
        for e in range(1, net.num_exits + 1):
            for info in m.layer_infos(net, e):
                if stage_key(info) in keys:
                    found.setdefault(stage_key(info), {}).setdefault(stage_signature(info), info)
    return {k: list(v.values()) for k, v in found.items()}


def stage_chains(nets: Sequence[m.BranchyNetwork], keys: Sequence[str],
                 settings: Settings) -> list[Chain]:
    """The chains a sweep of the stage keys times: each model at
    ``stage_variants`` other widths and input sizes (and as it is, unless
    held out), and ``random_configs`` synthetic chains per key near the
    models' stages of that key. With ``holdout`` no model stage at its own
    size is recorded, whatever chain it turns up in."""
    rng = np.random.default_rng(settings.seed + 1)
    for net in nets:
        net.eval()  # batch norm on its running statistics, dropout off: as deployed
    chains: list[Chain] = []
    combos = [(w, r) for w in WIDTHS for r in RESOLUTIONS
              if (w, r) != (1.0, 1.0) and w * r <= MAX_GROWTH]
    for net in nets:
        picked = [combos[int(i)] for i in rng.permutation(len(combos))[:settings.stage_variants]]
        if not settings.holdout:
            picked.insert(0, (1.0, 1.0))
        for width, resolution in picked:
            chains += variant_chains(net, width, resolution, keys)
    refs = model_stages(nets, keys)
    for key in keys:
        mine = refs.get(key, [])
        # Without a model's stages of this key, the synthetic ones are all
        # there is: enough of them to fit.
        wanted = settings.random_configs + (0 if mine else 2 * len(STAGE_VARIABLES[key]))
        made = tries = 0
        while made < wanted and tries < 4 * wanted:
            tries += 1
            ref = mine[int(rng.integers(len(mine)))] if mine else None
            chain = synthetic_chain(key, ref, rng, keys)
            if chain is not None:
                chains.append(chain)
                made += 1
    if settings.holdout:
        own = {stage_signature(info) for net in nets for e in range(1, net.num_exits + 1)
               for info in m.layer_infos(net, e)}
        for chain in chains:
            chain.record = [r and stage_signature(i) not in own
                            for r, i in zip(chain.record, chain.infos, strict=True)]
    return [c for c in chains if any(c.record)]


def time_chains(chains: Sequence[Chain], settings: Settings,
                progress: bool = False) -> list[list[float]]:
    """Wall milliseconds of each stage of each chain, timed as it runs in its chain.

    A stage's time runs from the clock read before it to the one before the
    next stage (the loop's own overhead included, as in a network's run).
    Chains are grouped into chunks of ``CHAINS_PER_CHUNK`` and run in
    ``repeats`` passes, each in a fresh random order (as ``time_jobs``), so
    that each chain runs after unrelated work, as a frame's sub-model does,
    never back to back with itself (and after ``idle_ms`` asleep, if set);
    per stage the median over passes of its CPU time, scaled by the chunk's
    wall time over its CPU time while running.
    """
    rng = np.random.default_rng(settings.seed)
    clock = time.process_time_ns
    count = max(1, -(-len(chains) // CHAINS_PER_CHUNK))
    chunks = [[int(j) for j in part]
              for part in np.array_split(rng.permutation(len(chains)), count)]
    result: list[list[float]] = [[] for _ in chains]
    with torch.inference_mode():
        for chunk in tqdm(chunks, desc='timing stages', unit='chunk', disable=not progress,
                          file=sys.stderr, mininterval=1.0):
            for _ in range(settings.warmup):
                for j in chunk:
                    h = chains[j].x
                    for stage in chains[j].stages:
                        h = stage(h)
            samples = {j: np.zeros((settings.repeats, len(chains[j].stages)), np.int64)
                       for j in chunk}
            wall = cpu = 0
            for r in range(settings.repeats):
                for j in rng.permutation(chunk):
                    if settings.idle_ms > 0:
                        time.sleep(settings.idle_ms / 1e3)
                    h = chains[j].x
                    row = samples[j][r]
                    wall0 = time.perf_counter_ns()
                    start = before = clock()
                    for i, stage in enumerate(chains[j].stages):
                        h = stage(h)
                        now = clock()
                        row[i] = now - before
                        before = now
                    wall += time.perf_counter_ns() - wall0
                    cpu += before - start
            scale = 1.0 if settings.cpu_time else wall / max(cpu, 1)
            for j in chunk:
                result[j] = [float(v) * scale / 1e6 for v in np.median(samples[j], axis=0)]
    return result


def stage_sweep(nets: Sequence[m.BranchyNetwork], keys: Sequence[str], settings: Settings,
                progress: bool = True) -> Results:
    """Time the stage keys' samples in their chains: {key: [(variables, ms), ...]}
    (with the models' single layers of the paper's types, as they run among
    the stages: their samples join the paper's sweep)."""
    results: Results = {k: [] for k in keys}
    if not keys:
        return results
    chains = stage_chains(nets, keys, settings)
    for chain, times in zip(chains, time_chains(chains, settings, progress), strict=True):
        for info, record, ms in zip(chain.infos, chain.record, times, strict=True):
            if record:
                results.setdefault(stage_key(info), []).append((layer_variables(info), ms))
    return results


def time_model_load(nbytes: int, settings: Settings) -> float:
    """Median ms to read a state_dict of about nbytes with weights_only=True."""
    state = {'weight': torch.rand(max(1, nbytes // 4))}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    raw = buffer.getvalue()
    quick = Settings(repeats=settings.repeats, warmup=1, min_sample_ms=0.0)
    return time_call(lambda: torch.load(io.BytesIO(raw), weights_only=True), quick)


# --- link codecs -----------------------------------------------------------------------

# Activations the codecs are timed on (C, H, W; batch 1): float32 4 KB - 4 MB
# with channel counts from 16 to 256, as the models' partitions have.
CODEC_SHAPES = ((16, 8, 8), (64, 8, 8), (32, 16, 16), (128, 14, 14), (64, 28, 28),
                (24, 56, 56), (128, 28, 28), (64, 56, 56), (96, 64, 64), (160, 64, 64),
                (64, 112, 112), (256, 64, 64))
# Input frames (height, width): 32x32 to 640x480.
CODEC_FRAMES = ((32, 32), (64, 64), (96, 96), (128, 128), (224, 224), (240, 320),
                (360, 480), (480, 640))
# The normalisation the edge applies after decoding an input (ImageNet's: the
# cost of a non-trivial one, as the models' cards have).
# Each codec call is timed after this long asleep: a node codes one frame's
# payload after its thread waited for the frame. Coding a 32x32 JPEG took
# 13 us back to back and 200 us after a sleep of 5 ms or more on the CI host
# (x250 on the emulated device: planned at 3 ms, measured 50; docs/runs.md).
CODEC_PAUSE_MS = 10.0
CODEC_MEAN, CODEC_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _spread(values: Sequence, count: int) -> list:
    """``count`` of ``values`` spread over them, smallest and largest included."""
    if count >= len(values):
        return list(values)
    picks = np.unique(np.round(np.linspace(0, len(values) - 1, max(count, 2))).astype(int))
    return [values[int(i)] for i in picks]


def codec_activation(shape: Sequence[int], rng: np.random.Generator) -> np.ndarray:
    """A ReLU-like float32 1xCxHxW activation: relu of normal noise (half zeros)."""
    return np.maximum(rng.standard_normal((1, *shape), dtype=np.float32), 0.0)


def codec_frame(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A natural-ish HxWx3 uint8 RGB frame: blurred noise at several scales
    (smooth regions, edges and some fine texture), so a JPEG of it costs and
    weighs about what a camera frame's does."""
    import cv2

    frame = np.zeros((height, width, 3), np.float32)
    for cells, weight in ((4, 1.0), (16, 0.5), (64, 0.25), (256, 0.08)):
        ch, cw = max(2, height * cells // 480), max(2, width * cells // 480)
        noise = rng.standard_normal((ch, cw, 3)).astype(np.float32)
        frame += weight * cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC)
    frame -= frame.min()
    frame *= 255.0 / max(float(frame.max()), 1e-6)
    return frame.astype(np.uint8)


def codec_jobs(role: str, settings: Settings, rng: np.random.Generator | None = None
               ) -> list[tuple[str, int, Callable[[], object], int]]:
    """(codec, raw_bytes, job, footprint) for every codec but raw and every
    size of the sweep: a device's job encodes, an edge's decodes (an input
    also normalised to the float32 network input, which with raw the device
    does). raw_bytes: float32 bytes of an activation, uint8 bytes of a frame."""
    from edgent_ros import payload_codec as pc
    from edgent_ros.codec_names import ACTIVATION_CODECS, INPUT_CODECS, RAW

    if role not in ('device', 'edge'):
        raise ValueError(f'role must be device or edge, got {role!r}')
    rng = rng or np.random.default_rng(settings.seed)
    jobs: list[tuple[str, int, Callable[[], object], int]] = []
    for shape in _spread(CODEC_SHAPES, settings.codec_sizes):
        x = codec_activation(shape, rng)
        for codec in ACTIVATION_CODECS:
            if codec == RAW:
                continue
            enc = pc.encode_activation(x, codec)
            if role == 'device':
                job = functools.partial(pc.encode_activation, x, codec)
            else:
                job = functools.partial(pc.decode, enc, x.shape)
            jobs.append((codec, x.nbytes, job, x.nbytes + enc.nbytes))
    from edgent_ros.datasets import resize_rgb

    base = codec_frame(*CODEC_FRAMES[-1], rng)
    for height, width in _spread(CODEC_FRAMES, max(3, settings.codec_sizes * 2 // 3)):
        rgb = resize_rgb(base, (height, width))  # as the camera shrinks its frames
        for codec in INPUT_CODECS:
            if codec == RAW:
                continue
            enc = pc.encode_input(rgb, codec)
            if role == 'device':
                job = functools.partial(pc.encode_input, rgb, codec)
            else:
                def job(enc: pc.Encoded = enc, shape: tuple[int, ...] = rgb.shape) -> object:
                    return pc.normalise(pc.decode(enc, shape), CODEC_MEAN, CODEC_STD)
            jobs.append((codec, rgb.nbytes, job, 5 * rgb.nbytes + enc.nbytes))
    return jobs


def codec_sweep(role: str, settings: Settings, progress: bool = True,
                threads: int = 1) -> Results:
    """Time every codec but raw over its sweep: {codec: [((raw_bytes,), ms), ...]}:
    encoding (role device) or decoding (role edge), in shuffled passes as the
    paper's layers are, each call after CODEC_PAUSE_MS asleep as a node
    codes a frame's payload (``time_jobs``: wall time, or CPU time with
    ``settings.cpu_time``), OpenCV on ``threads`` threads as torch, the
    allocator pinned as the nodes pin theirs."""
    import cv2

    pin_allocator()
    before = cv2.getNumThreads()
    cv2.setNumThreads(threads)
    try:
        jobs = codec_jobs(role, settings)
        times = time_jobs([j[2] for j in jobs], settings, footprints=[j[3] for j in jobs],
                          progress=progress, desc=f'timing codecs ({role})',
                          pause_ms=CODEC_PAUSE_MS)
    finally:
        cv2.setNumThreads(before)
    results: Results = {}
    for (codec, raw_bytes, _, _), ms in zip(jobs, times, strict=True):
        results.setdefault(codec, []).append(((float(raw_bytes),), ms))
    return results


def fit_codecs(results: Results) -> dict[str, LayerModel]:
    """One regression per codec on raw_bytes, coefficients and intercept >= 0."""
    return {codec: fit_layer_model(np.array([r[0] for r in rows], dtype=np.float64),
                                   np.array([r[1] for r in rows], dtype=np.float64),
                                   CODEC_VARIABLES, positive=True)
            for codec, rows in results.items() if rows}


def profile_codecs(role: str, settings: Settings, progress: bool = True,
                   threads: int = 1) -> dict[str, LayerModel]:
    """This machine's codec models for a role: encoding (device) or decoding
    (edge) ms regressed on the uncoded bytes (``Profile.codecs``)."""
    return fit_codecs(codec_sweep(role, settings, progress=progress, threads=threads))


def codecs_note(role: str, settings: Settings) -> str:
    what = 'encoding' if role == 'device' else 'decoding (an input also normalised)'
    return (f'Codecs: {what} timed on ReLU-like float32 activations of '
            f'{len(_spread(CODEC_SHAPES, settings.codec_sizes))} shapes (4 KB-4 MB) and '
            f'natural-ish RGB frames of '
            f'{len(_spread(CODEC_FRAMES, max(3, settings.codec_sizes * 2 // 3)))} sizes '
            f'(32x32-640x480), {"CPU" if settings.cpu_time else "wall"} time, each call '
            f'after {CODEC_PAUSE_MS:g} ms asleep (as a node codes a frame), fitted on '
            'raw_bytes.')


def fit(results: Results) -> dict[str, LayerModel]:
    """One regression per type or key (stage keys with coefficients >= 0)."""
    models = {}
    for kind, rows in results.items():
        if not rows:
            continue
        x = np.array([r[0] for r in rows], dtype=np.float64)
        y = np.array([r[1] for r in rows], dtype=np.float64)
        models[kind] = fit_layer_model(x, y, ALL_VARIABLES[kind],
                                       positive=kind in STAGE_VARIABLES)
    return models


def profile_machine(role: str, name: str, *,
                    card: m.ModelCard | Sequence[m.ModelCard] | None, settings: Settings,
                    threads: int, cpu_quota: float | None = None, progress: bool = True,
                    nets: Sequence[m.BranchyNetwork] = (), all_types: bool = False,
                    codecs: bool = True) -> Profile:
    """Time, fit and return a profile of this machine (in the current process,
    its allocator pinned as the nodes pin theirs: ``edgent_ros.allocator``),
    with its link codecs' encoding (device) or decoding (edge) times unless
    ``codecs`` is False."""
    pin_allocator()
    torch.set_num_threads(threads)
    results = sweep(card, settings, progress=progress, nets=nets, all_types=all_types)
    codec_models = profile_codecs(role, settings, progress=progress, threads=threads) \
        if codecs else {}
    facts = machine_facts(threads)
    if codecs:
        facts['codec_pause_ms'] = CODEC_PAUSE_MS
    if cpu_quota is not None:
        facts['cpu_quota'] = cpu_quota
    facts['settings'] = {'repeats': settings.repeats, 'min_sample_ms': settings.min_sample_ms,
                         'random_configs': settings.random_configs, 'seed': settings.seed}
    if settings.cpu_time:
        facts['settings']['cpu_time'] = True
    cards = [] if card is None else [card] if isinstance(card, m.ModelCard) else list(card)
    notes = ''
    if any(kind in STAGE_VARIABLES for kind in results):
        facts['settings'].update(stage_variants=settings.stage_variants,
                                 holdout=settings.holdout, idle_ms=settings.idle_ms)
        models = [c.name for c in cards if any(stage_key(li) in STAGE_VARIABLES
                                               for e in c.exits for li in e.layers)] + [
            f'{net.architecture} {"x".join(map(str, net.input_shape))}' for net in nets]
        own = '' if settings.holdout else "the models' own, "
        if models:
            made = (f'{own}{settings.stage_variants} variants of each model at other widths '
                    f'(x{min(WIDTHS):g}-{max(WIDTHS):g}) and input sizes '
                    f'(x{min(RESOLUTIONS):g}-{max(RESOLUTIONS):g}), every exit, and '
                    f'{settings.random_configs} synthetic stages per key near the models\' '
                    f'stages' + (" (the models' own layers and stages at their own size held "
                                 'out of every fit)' if settings.holdout else '')
                    + f'; models: {", ".join(models)}')
        else:
            made = 'synthetic stages over a wide range (no model)'
        notes = (f'Stage keys fitted on stages timed whole, in chains of stages: {made}.'
                 + (f' Each chain timed after {settings.idle_ms:g} ms asleep (a device that '
                    'waits between frames).' if settings.idle_ms > 0 else '')
                 + (' CPU time, not wall time.' if settings.cpu_time else ''))
    if codec_models:
        notes = (notes + ' ' if notes else '') + codecs_note(role, settings)
    return Profile(name=name, role=role, source='measured by edgent-profile', machine=facts,
                   layers=fit(results), notes=notes, codecs=codec_models)


def add_codecs(base: Profile, settings: Settings, *, threads: int = 1,
               progress: bool = True, when: str = '', command: str = '') -> Profile:
    """``base`` with its codec models measured on this machine (in ``base``'s
    role), scaled by its ``machine.emulated_slowdown`` as its layers are; the
    layers untouched. ``when`` and ``command`` go into the notes."""
    pin_allocator()
    torch.set_num_threads(threads)
    factor = float(base.machine.get('emulated_slowdown', 1.0) or 1.0)
    measured = Profile(name=base.name, role=base.role, source=base.source, machine={},
                       layers={}, codecs=profile_codecs(base.role, settings, progress=progress,
                                                        threads=threads))
    if factor > 1.0:
        measured = measured.slowed(factor)
    note = codecs_note(base.role, settings)[:-1] + (f', x{factor:g} as the layers' if factor > 1.0
                                                     else '')
    note += f'; measured on {threads} thread(s)' + (f' {when}' if when else '') + \
        (f' by `{command}`' if command else '') + ' (the layers above not re-measured).'
    kept = base.notes.split('Codecs: ')[0].rstrip()  # an older codec note is replaced
    return Profile(name=base.name, role=base.role, source=base.source,
                   machine={**base.machine, 'codec_pause_ms': CODEC_PAUSE_MS},
                   layers=base.layers, notes=(kept + ' ' if kept else '') + note,
                   codecs=measured.codecs)


def measure_tails(names: Sequence[str], device: torch.device, settings: Settings, *,
                  progress: bool = True) -> dict[str, dict[int, list[float]]]:
    """Each named model's tails [p, N), p = 0..N-1, of every exit, timed whole
    on ``device`` (with the logits back on the CPU, as the edge node runs them):
    model name -> exit -> ms. On a GPU a tail is not the sum of its layers
    (fused kernels, launches), so a GPU edge is profiled this way."""
    from edgent_ros.inference import CoInferenceModel

    jobs = []
    models = {}
    for name in names:
        net, card = m.load(m.resolve_model_path(name))
        models[card.name] = CoInferenceModel(net, card, device=device)
        models[card.name].warm_up()
        jobs += [(card.name, e.exit_point, p, tuple(e.layers[p].in_shape))
                 for e in card.exits for p in range(len(e.layers))]
    tails: dict[str, dict[int, list[float]]] = {}
    for name, exit_point, p, shape in tqdm(jobs, desc=f'whole tails on {device}', unit='tail',
                                           disable=not progress):
        x = torch.randn(1, *shape)
        model = models[name]
        ms = time_call(lambda model=model, e=exit_point, p=p, x=x: model.tail(e, p, x),
                       settings)
        tails.setdefault(name, {}).setdefault(exit_point, []).append(ms)
    return tails


def _models(names: Sequence[str]) -> tuple[list[m.ModelCard], list[m.BranchyNetwork]]:
    """Cards (a model name or path) and networks (an architecture name, random
    weights at its default input size) whose layers the sweep is built around."""
    cards, nets = [], []
    for name in names:
        if not name:
            continue
        if name in m.ARCHITECTURES:
            nets.append(m.BranchyNetwork(name, 10))
        else:
            cards.append(m.load_card(m.resolve_model_path(name)))
    return cards, nets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog='edgent-profile',
        description='Profile layer latencies on this machine and fit Table I regressions '
                    '(and FLOPs-and-bytes regressions of merged stages and blocks).')
    parser.add_argument('--role', choices=('device', 'edge'), required=True)
    parser.add_argument('--out', type=Path, required=True, help='profile YAML to write')
    parser.add_argument('--model', action='append', default=None,
                        help='model (card name or path) or architecture name '
                             f'({", ".join(m.ARCHITECTURES)}) whose layers and stages the '
                             f'sweep is built around; repeatable (default {m.DEFAULT_MODEL}; '
                             "'' for none: a wide sweep of every type)")
    parser.add_argument('--all-types', action='store_true',
                        help='also sweep the stage keys no model uses (over a wide range)')
    parser.add_argument('--holdout', action='store_true',
                        help="leave the models' own layers and stages out of the sweep "
                             '(to evaluate the profile on them)')
    parser.add_argument('--idle-ms', type=float, default=0.0, metavar='MS',
                        help='sleep MS before each timed run of a chain of stages, as a device '
                             'that runs one frame and then waits (its caches go cold); '
                             'e.g. 20 for an emulated device (edgent_ros.inference)')
    parser.add_argument('--cpu-time', action='store_true',
                        help='profile CPU time, not wall time: what an emulated device '
                             '(--slowdown, the device node\'s emulated_slowdown) multiplies')
    parser.add_argument('--quick', action='store_true', help='a small, fast sweep (tests)')
    parser.add_argument('--threads', type=int, default=1, help='torch CPU threads (default 1)')
    parser.add_argument('--cpu-quota', type=float, default=None, metavar='FRACTION',
                        help='run under a cgroup CPU quota, e.g. 0.15 = 15%% of one core '
                             '(a Pi-class device; needs root)')
    parser.add_argument('--slowdown', type=float, default=1.0, metavar='FACTOR',
                        help='write the profile of an emulated device FACTOR times slower '
                             'than this CPU (the device node\'s emulated_slowdown)')
    parser.add_argument('--from', dest='source', default=None, metavar='PROFILE',
                        help='measure nothing: write PROFILE (a path or a shipped name) with '
                             "--role and --slowdown applied (an emulated device's profile "
                             'from an edge one)')
    parser.add_argument('--no-codecs', action='store_true',
                        help='do not time the link codecs (the profile gets no codecs section)')
    parser.add_argument('--codecs-only', action='store_true',
                        help='with --from: time only the link codecs (in the role and, scaled '
                             "by its emulated_slowdown, for the profile's machine) and write "
                             "PROFILE with them, its layers untouched")
    parser.add_argument('--whole-tails', action='store_true',
                        help='edge role: also time every exit\'s tails [p, N) whole, for '
                             'each --model, on --torch-device; the planner then times those '
                             'models\' edge part by them (what a GPU edge needs). With '
                             '--from PROFILE: only the tails, added to PROFILE')
    parser.add_argument('--torch-device', default='auto', choices=('auto', 'cpu', 'cuda'),
                        help='where --whole-tails runs the tails (default auto: a CUDA GPU '
                             'when torch sees one)')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    if args.whole_tails and args.role != 'edge':
        parser.error('--whole-tails is for the edge role (the device runs heads)')
    if args.threads < 1:
        parser.error(f'--threads must be at least 1, got {args.threads}')
    if not args.slowdown >= 1.0:
        parser.error(f'--slowdown must be >= 1, got {args.slowdown}')
    name = args.out.with_suffix('').name
    if args.codecs_only:
        if args.source is None:
            parser.error('--codecs-only needs --from PROFILE')
        if args.slowdown > 1.0 or args.no_codecs:
            parser.error("--codecs-only takes the slowdown from the profile's machine."
                         'emulated_slowdown; without --slowdown or --no-codecs')
        try:
            base = load_profile(resolve_profile_path(args.source))
        except ProfileError as exc:
            print(f'edgent-profile: error: {exc}', file=sys.stderr)
            return 2
        if base.role != args.role:
            parser.error(f'--role {args.role} but profile {base.name} is role {base.role}')
        settings = QUICK if args.quick else Settings()
        settings = Settings(**{**settings.__dict__, 'seed': args.seed,
                               'cpu_time': args.cpu_time})
        command = 'edgent-profile ' + ' '.join(sys.argv[1:] if argv is None else argv)
        profile = add_codecs(base, settings, threads=args.threads,
                             when=time.strftime('%Y-%m-%d'), command=command)
        profile = Profile(name=name, role=profile.role, source=profile.source,
                          machine=profile.machine, layers=profile.layers, notes=profile.notes,
                          codecs=profile.codecs)
        _print_codecs(profile)
        print(f'wrote {profile.save(args.out)}')
        return 0
    if args.source is not None and args.whole_tails:
        try:
            base = load_profile(resolve_profile_path(args.source))
            device = torch_device.resolve(args.torch_device)
            names = args.model if args.model is not None else [m.DEFAULT_MODEL]
            torch.set_num_threads(args.threads)
            settings = QUICK if args.quick else Settings()
            tails = {**base.tails, **measure_tails([n for n in names if n], device, settings)}
        except (ProfileError, m.ModelError, ValueError) as exc:
            print(f'edgent-profile: error: {exc}', file=sys.stderr)
            return 2
        if base.role != 'edge':
            parser.error(f'--whole-tails needs an edge profile; {base.name} is {base.role}')
        note = (f'Whole tails of {", ".join(sorted(tails))} timed on '
                f'{torch_device.describe(device)} by edgent-profile --whole-tails.')
        profile = replace(base, name=name, tails=tails,
                          machine={**base.machine, 'tails_device': torch_device.describe(device)},
                          notes=f'{base.notes} {note}'.strip())
        for model_name, by_exit in tails.items():
            for exit_point, ms in by_exit.items():
                print(f'{model_name} exit {exit_point}: tails ' +
                      ' '.join(f'{v:.2f}' for v in ms) + ' ms')
        print(f'wrote {profile.save(args.out)}')
        return 0
    if args.source is not None:
        try:
            base = load_profile(resolve_profile_path(args.source))
        except ProfileError as exc:
            print(f'edgent-profile: error: {exc}', file=sys.stderr)
            return 2
        profile = base.slowed(args.slowdown) if args.slowdown > 1.0 else base
        notes = f'{profile.notes} Made from profile {base.name} (role {base.role}) by ' \
                f'edgent-profile --from {args.source} --role {args.role}' + \
                (f' --slowdown {args.slowdown:g}.' if args.slowdown > 1.0 else '.')
        profile = Profile(name=name, role=args.role, source=profile.source,
                          machine=profile.machine, layers=profile.layers, notes=notes,
                          codecs=profile.codecs, tails=profile.tails)
        print(f'wrote {profile.save(args.out)}')
        return 0
    settings = QUICK if args.quick else Settings()
    settings = Settings(**{**settings.__dict__, 'seed': args.seed, 'holdout': args.holdout,
                           'idle_ms': args.idle_ms, 'cpu_time': args.cpu_time})
    try:
        cards, nets = _models(args.model if args.model is not None else [m.DEFAULT_MODEL])
    except m.ModelError as exc:
        print(f'edgent-profile: error: {exc}', file=sys.stderr)
        return 2

    def run() -> Profile:
        return profile_machine(args.role, name, card=cards or None, settings=settings,
                               threads=args.threads, cpu_quota=args.cpu_quota, nets=nets,
                               all_types=args.all_types, codecs=not args.no_codecs)

    try:
        if args.cpu_quota is not None:
            from edgent_ros.cpu_quota import QuotaError, cpu_quota
            try:
                with cpu_quota(args.cpu_quota) as group:
                    print(f'edgent-profile: running under {group.describe()}', file=sys.stderr)
                    profile = run()
            except QuotaError as exc:
                print(f'edgent-profile: error: {exc}', file=sys.stderr)
                return 2
        else:
            profile = run()
    except (m.ModelError, ProfileError) as exc:
        print(f'edgent-profile: error: {exc}', file=sys.stderr)
        return 2
    if args.slowdown > 1.0:
        profile = profile.slowed(args.slowdown)
    if args.whole_tails:
        try:
            device = torch_device.resolve(args.torch_device)
        except ValueError as exc:
            print(f'edgent-profile: error: {exc}', file=sys.stderr)
            return 2
        names = [n for n in (args.model if args.model is not None else [m.DEFAULT_MODEL]) if n]
        profile = replace(profile, tails=measure_tails(names, device, settings),
                          machine={**profile.machine,
                                   'tails_device': torch_device.describe(device)})
    path = profile.save(args.out)
    for kind, lm in profile.layers.items():
        terms = ' + '.join(f'{c:.3g}*{v}' for c, v in zip(lm.coef, lm.variables, strict=True))
        print(f'{kind:17} y = {terms} + {lm.intercept:.3g} ms   R2 {lm.r2:.3f}  '
              f'n {lm.samples}')
    _print_codecs(profile)
    print(f'wrote {path}')
    return 0


def _print_codecs(profile: Profile) -> None:
    what = 'encode' if profile.role == 'device' else 'decode'
    for codec, lm in profile.codecs.items():
        print(f'codec {codec:12} {what} = {lm.coef[0] * 1e6:.3g} ms/MB + {lm.intercept:.3g} ms'
              f'   R2 {lm.r2:.3f}  n {lm.samples}')


if __name__ == '__main__':
    raise SystemExit(main())

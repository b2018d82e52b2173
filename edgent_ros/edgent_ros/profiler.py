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
"""

from __future__ import annotations

import argparse
import functools
import io
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from edgent_ros import model as m
from edgent_ros.latency import (
    VARIABLES,
    LayerModel,
    Profile,
    fit_layer_model,
    layer_variables,
    machine_facts,
)


@dataclass
class Settings:
    repeats: int = 31
    warmup: int = 3
    min_sample_ms: float = 20.0
    random_configs: int = 24
    seed: int = 0


# The working set a chunk of timed layers may have: about that of the
# default model (2.8 MB of weights) and its activations.
CHUNK_BYTES = 8 << 20

QUICK = Settings(repeats=5, warmup=1, min_sample_ms=2.0, random_configs=4)


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
              footprints: list[int] | None = None, progress: bool = False) -> list[float]:
    """Wall milliseconds of one call of each job, timed in shuffled passes.

    Jobs are grouped into chunks whose footprints (weights and activations,
    bytes) add up to about ``CHUNK_BYTES``, the working set of a small
    network; each chunk runs ``repeats`` passes in a fresh random order. A
    job's time is the median of its per-call CPU times, scaled by the chunk's
    wall time over its CPU time (stalls under a CPU quota included).
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
    for chunk in tqdm(chunks, desc='timing', unit='chunk', disable=not progress,
                      file=sys.stderr, mininterval=1.0):
        for _ in range(settings.warmup):
            for j in chunk:
                jobs[j]()
        samples: dict[int, list[int]] = {j: [] for j in chunk}
        wall0, cpu0 = time.perf_counter_ns(), clock()
        for _ in range(settings.repeats):
            for j in rng.permutation(chunk):
                start = clock()
                jobs[j]()
                samples[j].append(clock() - start)
        scale = (time.perf_counter_ns() - wall0) / max(clock() - cpu0, 1)
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


def _model_layers(card: m.ModelCard | None, kinds: set[str]) -> list[m.LayerInfo]:
    if card is None:
        return []
    return sorted({(li.type, tuple(li.in_shape), li.filter_size, li.stride, li.num_filters,
                    li.in_features, li.out_features): li
                   for e in card.exits for li in e.layers if li.type in kinds}.values(),
                  key=lambda li: (li.type, li.in_bytes, li.out_bytes))


def _conv_configs(card: m.ModelCard | None, rng: np.random.Generator,
                  n: int) -> Iterator[tuple[int, int, int, int, int]]:
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
    yield from sorted(seen)


def _shape_configs(card: m.ModelCard | None, kinds: set[str], rng: np.random.Generator,
                   n: int) -> Iterator[tuple[int, ...]]:
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
    yield from sorted(seen)


def _fc_configs(card: m.ModelCard | None, rng: np.random.Generator,
                n: int) -> Iterator[tuple[int, int]]:
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
    yield from sorted(seen)


def sweep(card: m.ModelCard | None, settings: Settings,
          progress: bool = True) -> dict[str, list[tuple[tuple[float, ...], float]]]:
    """Time every layer type over its sweep: {type: [(variables, ms), ...]}."""
    rng = np.random.default_rng(settings.seed)
    n = settings.random_configs
    jobs: list[tuple[str, nn.Module, torch.Tensor]] = []
    for c, size, k, s, f in _conv_configs(card, rng, n):
        jobs.append(('conv', nn.Conv2d(c, f, k, stride=s, padding=k // 2),
                     torch.rand(1, c, size, size)))
    for shape in _shape_configs(card, {'relu'}, rng, n):
        jobs.append(('relu', nn.ReLU(), torch.rand(1, *shape)))
    for shape in _shape_configs(card, {'lrn'}, rng, n):
        if len(shape) == 3:
            jobs.append(('lrn', m._lrn(), torch.rand(1, *shape)))
    for shape in _shape_configs(card, {'dropout'}, rng, n):
        jobs.append(('dropout', nn.Dropout(0.5), torch.rand(1, *shape)))
    for shape in _shape_configs(card, {'flatten'}, rng, n):
        jobs.append(('flatten', nn.Flatten(), torch.rand(1, *shape)))
    for shape in _shape_configs(card, {'pool'}, rng, n):
        if len(shape) == 3:
            jobs.append(('pool', m._pool(), torch.rand(1, *shape)))
    for fin, fout in _fc_configs(card, rng, n):
        jobs.append(('fc', nn.Linear(fin, fout), torch.rand(1, fin)))
    results: dict[str, list[tuple[tuple[float, ...], float]]] = {t: [] for t in VARIABLES}
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
    return results


def time_model_load(nbytes: int, settings: Settings) -> float:
    """Median ms to read a state_dict of about nbytes with weights_only=True."""
    state = {'weight': torch.rand(max(1, nbytes // 4))}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    raw = buffer.getvalue()
    quick = Settings(repeats=settings.repeats, warmup=1, min_sample_ms=0.0)
    return time_call(lambda: torch.load(io.BytesIO(raw), weights_only=True), quick)


def fit(results: dict[str, list[tuple[tuple[float, ...], float]]]) -> dict[str, LayerModel]:
    models = {}
    for kind, rows in results.items():
        if not rows:
            continue
        x = np.array([r[0] for r in rows], dtype=np.float64)
        y = np.array([r[1] for r in rows], dtype=np.float64)
        models[kind] = fit_layer_model(x, y, VARIABLES[kind])
    return models


def profile_machine(role: str, name: str, *, card: m.ModelCard | None, settings: Settings,
                    threads: int, cpu_quota: float | None = None,
                    progress: bool = True) -> Profile:
    """Time, fit and return a profile of this machine (in the current process)."""
    torch.set_num_threads(threads)
    results = sweep(card, settings, progress=progress)
    facts = machine_facts(threads)
    if cpu_quota is not None:
        facts['cpu_quota'] = cpu_quota
    facts['settings'] = {'repeats': settings.repeats, 'min_sample_ms': settings.min_sample_ms,
                         'random_configs': settings.random_configs, 'seed': settings.seed}
    return Profile(name=name, role=role, source='measured by edgent-profile', machine=facts,
                   layers=fit(results))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog='edgent-profile',
        description='Profile layer latencies on this machine and fit Table I regressions.')
    parser.add_argument('--role', choices=('device', 'edge'), required=True)
    parser.add_argument('--out', type=Path, required=True, help='profile YAML to write')
    parser.add_argument('--model', default=m.DEFAULT_MODEL,
                        help="model whose layer configurations join the sweep ('' for none)")
    parser.add_argument('--quick', action='store_true', help='a small, fast sweep (tests)')
    parser.add_argument('--threads', type=int, default=1, help='torch CPU threads (default 1)')
    parser.add_argument('--cpu-quota', type=float, default=None, metavar='FRACTION',
                        help='run under a cgroup CPU quota, e.g. 0.15 = 15%% of one core '
                             '(a Pi-class device; needs root)')
    parser.add_argument('--slowdown', type=float, default=1.0, metavar='FACTOR',
                        help='write the profile of an emulated device FACTOR times slower '
                             'than this CPU (the device node\'s emulated_slowdown)')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error(f'--threads must be at least 1, got {args.threads}')
    if not args.slowdown >= 1.0:
        parser.error(f'--slowdown must be >= 1, got {args.slowdown}')
    settings = QUICK if args.quick else Settings()
    settings = Settings(**{**settings.__dict__, 'seed': args.seed})
    card = m.load_card(m.resolve_model_path(args.model)) if args.model else None
    name = args.out.with_suffix('').name

    def run() -> Profile:
        return profile_machine(args.role, name, card=card, settings=settings,
                               threads=args.threads, cpu_quota=args.cpu_quota)

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
    except m.ModelError as exc:
        print(f'edgent-profile: error: {exc}', file=sys.stderr)
        return 2
    if args.slowdown > 1.0:
        profile = profile.slowed(args.slowdown)
    path = profile.save(args.out)
    for kind, lm in profile.layers.items():
        terms = ' + '.join(f'{c:.3g}*{v}' for c, v in zip(lm.coef, lm.variables, strict=True))
        print(f'{kind:10} y = {terms} + {lm.intercept:.3g} ms   R2 {lm.r2:.3f}  n {lm.samples}')
    print(f'wrote {path}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())

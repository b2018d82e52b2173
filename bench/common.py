"""Helpers shared by the benchmarks: timing, machine facts, result files."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / 'results'


def time_us(fn: Callable[[], object], repeats: int = 200, warmup: int = 10) -> dict[str, float]:
    """Median, p10 and p90 wall time of fn(), in microseconds."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter_ns()
        fn()
        samples.append((time.perf_counter_ns() - start) / 1e3)
    samples.sort()
    return {
        'median_us': statistics.median(samples),
        'p10_us': samples[len(samples) // 10],
        'p90_us': samples[(len(samples) * 9) // 10],
    }


def machine() -> dict[str, object]:
    """What ran the benchmark."""
    import numpy

    from edgent_ros.latency import machine_facts
    return {**machine_facts(), 'cpus': os.cpu_count(), 'numpy': numpy.__version__,
            'platform': platform.platform(), 'date': time.strftime('%Y-%m-%d %H:%M:%S %Z')}


def write(name: str, payload: dict[str, object]) -> Path:
    """Write bench/results/<name>.json and return its path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f'{name}.json'
    path.write_text(json.dumps(payload, indent=2, default=_plain) + '\n')
    return path


def _plain(value: object) -> object:
    """numpy scalars (a numpy bool in a result) as the Python values they hold."""
    if hasattr(value, 'item'):
        return value.item()
    raise TypeError(f'{type(value).__name__} is not JSON serialisable')

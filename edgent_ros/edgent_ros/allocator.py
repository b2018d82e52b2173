"""Pin glibc's malloc thresholds, so a network's buffers are reused, not mapped afresh.

glibc serves a large allocation (over its *mmap threshold*) with a fresh
``mmap`` and gives freed heap memory back to the system (over its *trim
threshold*); both thresholds move with the process's history of allocations.
A network's activations are such allocations, so the same network runs in
one of two steady states depending on what the process did before: buffers
reused, or every run faulting in fresh pages. On this project's CI host
MobileNetV3-Small at 224x224 took 7.2 ms per run in one fresh process and
9.5 ms (about 1000 page faults per run) in another; per-stage timings, done
in yet another state, predict neither reliably (docs/latency.md).

``pin_allocator`` fixes both thresholds (which also stops glibc moving
them): allocations up to 32 MiB come from the heap and freed memory stays
in the process for the next run, so after its first run a network runs
without page faults in every process. The cost is that the process keeps
its peak heap (for these networks, tens of MB). The profiler, the
benchmarks and ``inference.CoInferenceModel`` (the device and edge nodes)
call it, so that what is profiled is what runs.

Pure: no torch, no rclpy. A no-op where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # glibc's largest on 64-bit systems
TRIM_THRESHOLD = 1 << 30

_pinned: bool | None = None


def pin_allocator() -> bool:
    """Fix glibc's mmap and trim thresholds (once per process); False where
    they cannot be set (not glibc)."""
    global _pinned
    if _pinned is None:
        try:
            libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6')
            mallopt = libc.mallopt
        except (OSError, AttributeError):
            _pinned = False
        else:
            mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
            _pinned = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and \
                bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _pinned

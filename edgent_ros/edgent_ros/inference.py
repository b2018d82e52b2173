"""Co-inference without ROS: the device's head, the edge's tail, and checks between.

The device runs stages [0, p) of an exit's sub-model on a camera frame; the
edge checks what arrives against the model (exit and partition in range,
shape, data type, finite values) and runs [p, N). Both sides use the same
model file, so the edge knows exactly what activation a (exit, partition)
must carry. Never imports rclpy.
"""

from __future__ import annotations

import statistics
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch

from edgent_ros import datasets
from edgent_ros.allocator import pin_allocator
from edgent_ros.model import BranchyNetwork, ModelCard

T = TypeVar('T')


class ActivationError(ValueError):
    """An activation that does not fit the model; the text says why."""


@dataclass(frozen=True)
class TopK:
    class_ids: list[int]
    scores: list[float]


def preprocess(rgb: np.ndarray, card: ModelCard | None = None) -> torch.Tensor:
    """An HxWx3 uint8 RGB frame of any size -> the network's 1xCxHxW float
    input: resized to the card's input size, normalised as the card says (the
    default model's 32x32 in [0, 1] without a card)."""
    if card is None:
        return datasets.to_model_input(datasets.resize_rgb(np.ascontiguousarray(rgb)))
    size = (card.input_shape[1], card.input_shape[2])
    return datasets.to_model_input(datasets.resize_rgb(np.ascontiguousarray(rgb), size),
                                   card.mean, card.std)


def top_k(logits: torch.Tensor, k: int) -> TopK:
    """Top-k classes of one frame's logits, with softmax scores. Raises
    ActivationError when the logits are not finite (an input of absurd
    magnitude overflowed the network): no answer beats a NaN one."""
    if not bool(torch.isfinite(logits).all()):
        raise ActivationError('the network\'s output is not finite (the input overflows it)')
    probs = torch.softmax(logits.reshape(-1).float(), dim=0)
    k = max(1, min(k, probs.numel()))
    scores, ids = torch.topk(probs, k)
    return TopK([int(i) for i in ids], [float(s) for s in scores])


class CoInferenceModel:
    """A loaded branchy model and its card, with the checks both sides need.

    ``slowdown`` (>= 1) emulates a CPU that many times slower than this one,
    for testbeds: after each run of stages the calling thread sleeps until the
    run's wall time is slowdown x the median CPU time of that same run of
    layers over its last ``SLOW_HISTORY`` runs (this one included). A device
    runs a fixed workload at a steady pace; this host's jitter (preemption by
    the other processes, cache misses), multiplied by slowdown, would not be:
    a 0.3 ms hiccup would become 120 ms at 400x. A cgroup CPU quota cannot
    emulate a Pi-class device for a small network either: it throttles in
    steps of at least 1 ms of CPU, as long as the network's whole forward pass
    here (docs/evaluation.md). Only the layers are slowed, not the ROS plumbing.

    Creating one pins the process's allocator (``edgent_ros.allocator``):
    without it the same network runs with or without a page fault per
    activation page depending on the process's history, up to a third
    slower, which no latency profile can predict.
    """

    SLOW_HISTORY = 15

    def __init__(self, net: BranchyNetwork, card: ModelCard, slowdown: float = 1.0,
                 device: torch.device | str = 'cpu') -> None:
        if not (np.isfinite(slowdown) and slowdown >= 1.0):
            raise ValueError(f'slowdown must be a number >= 1, got {slowdown}')
        pin_allocator()
        # Where the tails run (the edge's GPU, when it has one); heads, the
        # device side, run on the CPU whatever this says.
        self.device = torch.device(device)
        self.net = net.eval().to(self.device)
        self.card = card
        self.num_exits = net.num_exits
        self.slowdown = float(slowdown)
        # (exit, start, end) of layers, or another run_slowed key -> CPU times
        # of its last runs, s (slowdown only)
        self.cpu_history: dict[Hashable, deque[float]] = {}

    def _run(self, exit_point: int, x: torch.Tensor, start: int, end: int | None) -> torch.Tensor:
        def run() -> torch.Tensor:
            with torch.inference_mode():
                out = self.net.run(exit_point, x.to(self.device), start, end)
                return out if self.device.type == 'cpu' else out.cpu()  # waits for the GPU
        # A batch is slowed by its own runs' CPU time (not a single frame's).
        key = (exit_point, start, end) if x.shape[0] == 1 else (exit_point, start, end,
                                                                  x.shape[0])
        return self.run_slowed(key, run)

    def run_slowed(self, key: Hashable, fn: Callable[[], T]) -> T:
        """``fn()``, slowed down as the layers are (``slowdown``): with a
        slowdown, the calling thread then sleeps until the call's wall time is
        slowdown x the median CPU time of the last ``SLOW_HISTORY`` calls under
        the same ``key`` (this one included). The device's encoding of what it
        sends runs through this too: a slower device encodes slower."""
        wall0, cpu0 = time.perf_counter(), time.thread_time()
        out = fn()
        if self.slowdown > 1.0:
            history = self.cpu_history.setdefault(key, deque(maxlen=self.SLOW_HISTORY))
            history.append(time.thread_time() - cpu0)
            wall = self.slowdown * statistics.median(history)
            time.sleep(max(0.0, wall - (time.perf_counter() - wall0)))
        return out

    def warm_up(self) -> None:
        """Run every exit once on a blank input, at this CPU's speed and
        recording nothing: torch's first run of a layer allocates and plans
        (220 ms for an exit first run as a fallback, on the testbed), and a
        frame answered alone must not pay that when it has least time."""
        x = torch.zeros(1, *self.card.input_shape, device=self.device)
        with torch.inference_mode():
            for exit_point in range(1, self.num_exits + 1):
                self.net.run(exit_point, x, 0, None)

    def num_layers(self, exit_point: int) -> int:
        return self.net.num_layers(exit_point)

    def head(self, exit_point: int, partition: int, x: torch.Tensor) -> torch.Tensor:
        """Device side: layers [0, partition)."""
        return self._run(exit_point, x, 0, partition)

    def tail(self, exit_point: int, partition: int, x: torch.Tensor) -> torch.Tensor:
        """Edge side: layers [partition, N), on ``device``; the logits on the CPU."""
        return self._run(exit_point, x, partition, None)

    def tail_batch(self, exit_point: int, partition: int,
                   xs: list[torch.Tensor]) -> list[torch.Tensor]:
        """The tails of several same-shaped activations (1xCxHxW each) run as one
        batch; each one's logits (1xK), as ``tail`` gives them one by one."""
        if len(xs) == 1:
            return [self.tail(exit_point, partition, xs[0])]
        return list(torch.split(self.tail(exit_point, partition, torch.cat(xs)), 1))

    def expected_shape(self, exit_point: int, partition: int) -> tuple[int, ...]:
        """Shape (batch 1) of the activation entering layer `partition`."""
        layers = self.card.exit(exit_point).layers
        return (1, *layers[partition].in_shape)

    def check_activation(self, exit_point: int, partition: int, array: np.ndarray) -> None:
        """Refuse an activation the edge must not run, saying why."""
        if not 1 <= exit_point <= self.num_exits:
            raise ActivationError(f'exit point {exit_point} is outside 1..{self.num_exits}')
        n = self.num_layers(exit_point)
        if not 0 <= partition < n:
            raise ActivationError(f'partition point {partition} is outside 0..{n - 1} for '
                                  f'exit {exit_point} (the edge runs at least one layer)')
        expected = self.expected_shape(exit_point, partition)
        if tuple(array.shape) != expected:
            raise ActivationError(f'exit {exit_point} at partition {partition} takes shape '
                                  f'{list(expected)}, got {list(array.shape)}')
        if array.dtype != np.float32:
            raise ActivationError(f'activations must be float32, got {array.dtype}')
        if not np.isfinite(array).all():
            bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
            raise ActivationError(f'activation holds {bad} NaN or infinite value(s)')


def exit_and_partition_ok(num_exits: int, layers: dict[int, int], exit_point: int,
                          partition: int) -> str | None:
    """Why a plan cannot be run, or None: (exit, partition) within the model."""
    if not 1 <= exit_point <= num_exits:
        return f'exit point {exit_point} is outside 1..{num_exits}'
    n = layers[exit_point]
    if not 0 <= partition <= n:
        return f'partition point {partition} is outside 0..{n} for exit {exit_point}'
    return None


def reply_wait_ms(*, remote_ms: float, fallback_ms: float, deadline_ms: float,
                  age_ms: float) -> float:
    """How long a frame whose activation leaves now (``age_ms`` after capture)
    may wait for the edge before the device answers it alone, ms.

    Until the last moment a local answer (``fallback_ms``) still meets the
    deadline, but never less than twice the predicted remote part
    (``remote_ms``, transfer and edge; a slow link is not a dead edge) nor
    50 ms. When a local answer would be late by then (the device part took
    most of the budget, or the fallback alone is slower than the deadline),
    the edge is the frame's best chance: wait until the deadline. No deadline
    (<= 0): the floor alone.
    """
    floor = max(50.0, 2.0 * max(0.0, remote_ms))
    if deadline_ms <= 0:
        return floor
    last_local = deadline_ms - age_ms - fallback_ms
    if last_local >= floor:
        return last_local
    return max(floor, deadline_ms - age_ms)

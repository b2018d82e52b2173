"""Edgent's online stage: Algorithm 1, device first (paper Sec. III-C).

For exit i with N_i layers and partition point p in 0..N_i the device runs
layers [0, p), uploads their output (the input itself for p = 0), the edge
runs [p, N_i) and sends back the result; p = N_i is device only and sends
nothing. The predicted latency is

    A(i, p) = sum ED[0:p] + D_p / B + m + sum ES[p:N_i] + R_i / B_down + m_down

with ED and ES the device and edge layer latencies from the regression
profiles, D_p the bytes uploaded at p, B the uplink bandwidth, R_i the result
bytes, and m a fixed per-message latency (both terms vanish for p = N_i).

Algorithm 1: exits are tried from the most accurate down (by the accuracy
measured on held-out data, which for the paper's model is also the order of
exit index); for each, the partition of least predicted latency; the first
exit whose best partition meets the deadline is returned. If none does, the
answer says so (``feasible = False``) and carries the fastest plan of all as
best effort.

Everything is precomputed when the model and profiles load: per-exit prefix
sums laid end to end in flat arrays, so a decision is a handful of numpy
operations over all layers at once (no Python loop over layers).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edgent_ros.latency import SubModelLatency

MODES = ('edgent', 'device_only', 'edge_only', 'partition_only')


@dataclass(frozen=True)
class Decision:
    """One plan: where to exit and where to split, and what it should cost."""

    exit_point: int
    partition: int
    num_layers: int
    feasible: bool
    accuracy: float
    bandwidth_kbps: float
    deadline_ms: float
    total_ms: float
    device_ms: float
    upload_ms: float
    edge_ms: float
    download_ms: float
    upload_bytes: int

    @property
    def key(self) -> tuple[int, int]:
        return self.exit_point, self.partition

    @property
    def device_only(self) -> bool:
        return self.partition == self.num_layers


@dataclass(frozen=True)
class PlanBasis:
    """What a published plan's prediction was made with, to calibrate from its
    frames: the per-frame overhead, the device part (without the overhead;
    and by the profile alone), the upload (with the transfer scale) and its
    bytes, and the scale and bandwidth it assumed."""

    overhead_ms: float
    device_ms: float
    device_base_ms: float
    upload_ms: float
    upload_bytes: int
    transfer_scale: float
    bandwidth_kbps: float

    def upload_at(self, bandwidth_kbps: float, transfer_scale: float = 1.0) -> float:
        """The plan's upload at another bandwidth estimate and transfer scale, ms.
        A plan stays in force while the bandwidth moves (it is only replaced
        when the decision changes): its frames' transfers must be compared
        with the estimate when they ran, not when the plan was made."""
        if not (self.transfer_scale > 0 and bandwidth_kbps > 0 and self.bandwidth_kbps > 0):
            return self.upload_ms
        return (self.upload_ms / self.transfer_scale * transfer_scale *
                self.bandwidth_kbps / bandwidth_kbps)


@dataclass(frozen=True)
class ExitCosts:
    """One exit's inputs to the planner (index p = partition point 0..N)."""

    exit_point: int
    accuracy: float
    device_layers_ms: Sequence[float]
    edge_layers_ms: Sequence[float]
    upload_bytes: Sequence[int]   # N + 1 values; the last (device only) is 0
    result_bytes: int


class Planner:
    """Algorithm 1 over precomputed prefix sums."""

    def __init__(self, exits: Sequence[ExitCosts], *, message_ms: float = 0.0,
                 overhead_ms: float = 0.0) -> None:
        if not exits:
            raise ValueError('a planner needs at least one exit')
        if message_ms < 0:
            raise ValueError(f'per-message latency must be >= 0, got {message_ms}')
        self.message_ms = float(message_ms)
        # A fixed cost every frame pays whatever the plan (image transport and
        # conversion, callbacks): not in the layer profiles, learnt online.
        self.overhead_ms = 0.0
        self.set_overhead(overhead_ms)
        self.exits = list(exits)
        device, edge, upload, result, remote, offsets = [], [], [], [], [], []
        start = 0
        for e in self.exits:
            ed = np.asarray(e.device_layers_ms, dtype=np.float64)
            es = np.asarray(e.edge_layers_ms, dtype=np.float64)
            up = np.asarray(e.upload_bytes, dtype=np.float64)
            n = len(ed)
            if len(es) != n or len(up) != n + 1:
                raise ValueError(f'exit {e.exit_point}: {n} device, {len(es)} edge layer '
                                 f'latencies and {len(up)} upload sizes (need N, N, N+1)')
            if up[n] != 0:
                raise ValueError(f'exit {e.exit_point}: device only (p = N) must upload 0 bytes')
            device.append(np.concatenate([[0.0], np.cumsum(ed)]))
            edge.append(np.concatenate([np.cumsum(es[::-1])[::-1], [0.0]]))
            upload.append(up)
            result.append(np.where(np.arange(n + 1) < n, float(e.result_bytes), 0.0))
            remote.append((np.arange(n + 1) < n).astype(np.float64))
            offsets.append(start)
            start += n + 1
        self._device_base = np.concatenate(device)
        self._edge = np.concatenate(edge)
        self.device_scale = 1.0
        self._device = self._device_base
        self._compute = self._device + self._edge
        self._factor = np.ones(len(self._device_base))
        self.remote_delay_ms = 0.0
        self._upload_bits = np.concatenate(upload) * 8.0
        self.transfer_scale = 1.0
        self._result_bits = np.concatenate(result) * 8.0
        self._remote = np.concatenate(remote)
        self._offsets = np.asarray(offsets)
        self._partition = np.arange(start) - np.repeat(self._offsets,
                                                       [len(d) for d in device])
        self._segment = np.repeat(np.arange(len(self.exits)), [len(d) for d in device])
        accuracy = np.array([e.accuracy for e in self.exits])
        # Most accurate first; among equals, the deeper exit (the paper's order).
        index = np.array([e.exit_point for e in self.exits])
        self._order = np.lexsort((-index, -accuracy))

    @classmethod
    def from_latency(cls, latency: SubModelLatency, *, message_ms: float = 0.0) -> Planner:
        exits = []
        for e in latency.card.exits:
            a = latency.exits[e.exit_point]
            exits.append(ExitCosts(
                exit_point=e.exit_point, accuracy=e.accuracy,
                device_layers_ms=a.device_layers, edge_layers_ms=a.edge_layers,
                upload_bytes=a.upload_bytes, result_bytes=a.result_bytes))
        return cls(exits, message_ms=message_ms)

    def set_overhead(self, overhead_ms: float) -> None:
        if not overhead_ms >= 0:
            raise ValueError(f'per-frame overhead must be >= 0 ms, got {overhead_ms}')
        self.overhead_ms = float(overhead_ms)

    def set_device_scale(self, scale: float) -> None:
        """Multiply every device layer's predicted latency by ``scale``: the
        measured/predicted ratio of the device's compute, learnt online (the
        profile was made in a tight loop; a node running among callbacks, or a
        throttled CPU, is slower by a roughly constant factor)."""
        if not (np.isfinite(scale) and scale > 0):
            raise ValueError(f'device scale must be a positive number, got {scale}')
        self.device_scale = float(scale)
        self._rescale()

    def _rescale(self) -> None:
        self._device = self._device_base * self.device_scale * self._factor
        self._compute = self._device + self._edge + self._remote * self.remote_delay_ms

    def set_transfer_scale(self, scale: float) -> None:
        """Multiply every upload's predicted time by ``scale``: measured transfer
        time over bytes / estimated bandwidth, learnt online (a shaper's burst
        and DDS's headers make a message of a given size take a roughly
        constant factor longer or shorter than the estimate says)."""
        if not (np.isfinite(scale) and scale > 0):
            raise ValueError(f'transfer scale must be a positive number, got {scale}')
        self.transfer_scale = float(scale)

    def set_plan_factor(self, exit_point: int, partition: int, factor: float) -> None:
        """Multiply one (exit, partition)'s predicted device compute by
        ``factor`` (on top of the device scale): what that plan's frames
        measured on the device over what was predicted, learnt online for
        plans actually run (small and large layers miss their profile by
        different amounts)."""
        if not (np.isfinite(factor) and factor > 0):
            raise ValueError(f'plan factor must be a positive number, got {factor}')
        self._factor[self._flat(exit_point, partition)] = factor
        self._rescale()

    def plan_factor(self, exit_point: int, partition: int) -> float:
        return float(self._factor[self._flat(exit_point, partition)])

    def set_remote_delay(self, delay_ms: float) -> None:
        """Add ``delay_ms`` to every remote configuration's predicted latency:
        what frames sent to the edge took beyond their prediction when its
        answer came too late and the device answered alone (a link that
        carries the estimated rate but queues, an edge that is slow); learnt
        online, so the plans whose frames fall back are not chosen again and
        again, nor their neighbours one after another."""
        if not (np.isfinite(delay_ms) and delay_ms >= 0):
            raise ValueError(f'remote delay must be a number >= 0 ms, got {delay_ms}')
        self.remote_delay_ms = float(delay_ms)
        self._rescale()

    def clear_plan_factors(self) -> None:
        self._factor[:] = 1.0
        self._rescale()

    def _flat(self, exit_point: int, partition: int) -> int:
        segment = self._segment_of(exit_point)
        n = len(self.exits[segment].device_layers_ms)
        if not 0 <= partition <= n:
            raise ValueError(f'partition {partition} is outside 0..{n} for exit {exit_point}')
        return int(self._offsets[segment]) + partition

    def device_compute_ms(self, exit_point: int, partition: int) -> float:
        """Profiled (unscaled) device compute of layers [0, partition) of an exit."""
        return float(self._device_base[self._flat(exit_point, partition)])

    def device_tail_ms(self, exit_point: int, partition: int) -> float:
        """Predicted device compute of layers [partition, N) of an exit, under
        the device calibration: what finishing a frame on the device costs once
        its head has run there (the edge did not answer)."""
        n = len(self.exits[self._segment_of(exit_point)].device_layers_ms)
        return self.device_scale * (self.device_compute_ms(exit_point, n) -
                                    self.device_compute_ms(exit_point, partition))

    @property
    def total_layers(self) -> int:
        return len(self._device)

    def latencies(self, bandwidth_kbps: float,
                  download_kbps: float | None = None) -> np.ndarray:
        """Predicted ms of every (exit, partition), laid end to end."""
        down = bandwidth_kbps if download_kbps is None else download_kbps
        return (self._compute + self.transfer_scale * self._upload_bits / bandwidth_kbps
                + self._result_bits / down + self._remote * self.message_ms + self.overhead_ms)

    def plan(self, bandwidth_kbps: float, deadline_ms: float,
             download_kbps: float | None = None) -> Decision:
        """Algorithm 1: the most accurate exit whose best partition meets the deadline."""
        if not bandwidth_kbps > 0:
            raise ValueError(f'bandwidth must be > 0 kbps, got {bandwidth_kbps}')
        if not deadline_ms > 0:
            raise ValueError(f'deadline must be > 0 ms, got {deadline_ms}')
        if download_kbps is not None and not download_kbps > 0:
            raise ValueError(f'download bandwidth must be > 0 kbps, got {download_kbps}')
        totals = self.latencies(bandwidth_kbps, download_kbps)
        best = np.minimum.reduceat(totals, self._offsets)
        ok = best[self._order] <= deadline_ms
        if ok.any():
            segment = int(self._order[int(np.argmax(ok))])
            feasible = True
        else:
            segment = int(np.argmin(best))
            feasible = False
        lo = int(self._offsets[segment])
        hi = lo + len(self.exits[segment].device_layers_ms) + 1
        flat = lo + int(np.argmin(totals[lo:hi]))
        return self._decision(flat, feasible, bandwidth_kbps, deadline_ms,
                              bandwidth_kbps if download_kbps is None else download_kbps)

    def plan_mode(self, mode: str, bandwidth_kbps: float, deadline_ms: float,
                  download_kbps: float | None = None) -> Decision:
        """Edgent, or one of the paper's baselines (Fig. 9), all on the most
        accurate exit: ``device_only`` (p = N), ``edge_only`` (p = 0),
        ``partition_only`` (its best partition, as Neurosurgeon would choose)."""
        if mode == 'edgent':
            return self.plan(bandwidth_kbps, deadline_ms, download_kbps)
        if mode not in MODES:
            raise ValueError(f'unknown planner mode {mode!r} (modes: {", ".join(MODES)})')
        segment = int(self._order[0])
        exit_point = self.exits[segment].exit_point
        n = len(self.exits[segment].device_layers_ms)
        if mode == 'device_only':
            partition = n
        elif mode == 'edge_only':
            partition = 0
        else:
            lo = int(self._offsets[segment])
            totals = self.latencies(bandwidth_kbps, download_kbps)[lo:lo + n + 1]
            partition = int(np.argmin(totals))
        return self.evaluate(exit_point, partition, bandwidth_kbps, deadline_ms, download_kbps)

    def device_alone(self, deadline_ms: float) -> Decision:
        """What the device runs when the edge cannot be used: Algorithm 1 with
        every partition but p = N ruled out. The most accurate exit whose
        device-only latency meets the deadline, else the fastest one."""
        if not deadline_ms > 0:
            raise ValueError(f'deadline must be > 0 ms, got {deadline_ms}')
        ends = [int(self._offsets[seg]) + len(self.exits[seg].device_layers_ms)
                for seg in range(len(self.exits))]
        totals = {seg: self._total_at(ends[seg], 1.0, 1.0) for seg in range(len(self.exits))}
        for seg in self._order:
            if totals[int(seg)] <= deadline_ms:
                return self._decision(ends[int(seg)], True, 1.0, deadline_ms, 1.0)
        fastest = min(totals, key=totals.__getitem__)
        return self._decision(ends[fastest], False, 1.0, deadline_ms, 1.0)

    def device_exit_ms(self) -> list[float]:
        """Each exit run whole on the device alone, predicted ms, in exit order
        (the fallback's prediction is one of them)."""
        by_exit = {e.exit_point: self._total_at(int(self._offsets[seg]) +
                                                len(e.device_layers_ms), 1.0, 1.0)
                   for seg, e in enumerate(self.exits)}
        return [by_exit.get(i, 0.0) for i in range(1, max(by_exit) + 1)]  # 0: no such exit

    def evaluate(self, exit_point: int, partition: int, bandwidth_kbps: float,
                 deadline_ms: float, download_kbps: float | None = None) -> Decision:
        """The prediction for a given (exit, partition), e.g. a plan in force."""
        flat = self._flat(exit_point, partition)
        down = bandwidth_kbps if download_kbps is None else download_kbps
        total = self._total_at(flat, bandwidth_kbps, down)
        return self._decision(flat, total <= deadline_ms, bandwidth_kbps, deadline_ms, down)

    def _segment_of(self, exit_point: int) -> int:
        for i, e in enumerate(self.exits):
            if e.exit_point == exit_point:
                return i
        raise ValueError(f'no exit {exit_point} (exits: {[e.exit_point for e in self.exits]})')

    def _total_at(self, flat: int, up: float, down: float) -> float:
        return float(self._compute[flat] + self.transfer_scale * self._upload_bits[flat] / up
                     + self._result_bits[flat] / down + self._remote[flat] * self.message_ms
                     + self.overhead_ms)

    def _decision(self, flat: int, feasible: bool, up: float, deadline: float,
                  down: float) -> Decision:
        segment = int(self._segment[flat])
        e = self.exits[segment]
        remote = bool(self._remote[flat])
        upload_ms = self.transfer_scale * self._upload_bits[flat] / up + \
            (self.message_ms if remote else 0.0)
        download_ms = self._result_bits[flat] / down
        return Decision(
            exit_point=e.exit_point, partition=int(self._partition[flat]),
            num_layers=len(e.device_layers_ms), feasible=bool(feasible),
            accuracy=float(e.accuracy), bandwidth_kbps=float(up), deadline_ms=float(deadline),
            total_ms=self._total_at(flat, up, down),
            device_ms=float(self._device[flat]) + self.overhead_ms,
            upload_ms=float(upload_ms), edge_ms=float(self._edge[flat]),
            download_ms=float(download_ms), upload_bytes=int(self._upload_bits[flat] / 8))


class PlanTable:
    """Decisions precomputed over bandwidth levels for one deadline.

    Look-up is a binary search over the levels; a level's decision is the one
    for the level's bandwidth, so the table errs on the safe side when the
    levels are rounded down (the default grid has 2% steps).
    """

    def __init__(self, planner: Planner, deadline_ms: float, *, low_kbps: float = 1.0,
                 high_kbps: float = 1e6, step: float = 1.02) -> None:
        count = int(np.ceil(np.log(high_kbps / low_kbps) / np.log(step))) + 1
        self.levels = low_kbps * step ** np.arange(count)
        self.deadline_ms = deadline_ms
        self.decisions = [planner.plan(float(b), deadline_ms) for b in self.levels]

    def lookup(self, bandwidth_kbps: float) -> Decision:
        i = int(np.searchsorted(self.levels, bandwidth_kbps, side='right')) - 1
        return self.decisions[max(0, min(i, len(self.levels) - 1))]


def should_switch(planner: Planner, current: Decision | None, candidate: Decision,
                  hysteresis: float) -> bool:
    """Whether to replace the plan in force by a new decision, without flapping.

    Switch when there is no plan yet, when the plan in force no longer meets
    the deadline at the new bandwidth (to a candidate that does, or that is
    faster by more than ``hysteresis``), or when the candidate is more accurate
    (or, at equal accuracy, faster) and would still meet the deadline with
    ``hysteresis`` less bandwidth. A feasible plan in force is otherwise kept.
    """
    if current is None:
        return True
    if current.key == candidate.key:
        return False
    now = planner.evaluate(current.exit_point, current.partition, candidate.bandwidth_kbps,
                           candidate.deadline_ms)
    if not now.feasible:
        # Nothing in force meets the deadline: take a plan that does, or one
        # clearly faster (not one a hair faster, which flaps with the noise).
        return candidate.feasible or candidate.total_ms < (1.0 - hysteresis) * now.total_ms
    if not candidate.feasible:
        return False
    margin = planner.evaluate(candidate.exit_point, candidate.partition,
                              candidate.bandwidth_kbps * (1.0 - hysteresis),
                              candidate.deadline_ms)
    if not margin.feasible:
        return False
    if candidate.accuracy > current.accuracy:
        return True
    return candidate.accuracy == current.accuracy and \
        margin.total_ms < (1.0 - hysteresis) * now.total_ms

"""Edgent's online stage: Algorithm 1, device first (paper Sec. III-C).

For exit i with N_i layers and partition point p in 0..N_i the device runs
layers [0, p), uploads their output (the input itself for p = 0), the edge
runs [p, N_i) and sends back the result; p = N_i is device only and sends
nothing. The predicted latency is

    A(i, p) = sum ED[0:p] + D_p / B + m + sum ES[p:N_i] + R_i / B_down + m_down

with ED and ES the device and edge layer latencies from the regression
profiles, D_p the bytes uploaded at p, B the uplink bandwidth, R_i the result
bytes, and m a fixed per-message latency (both terms vanish for p = N_i).

What crosses may be coded (``edgent_ros.codec_names``: the input as its
pixels or a JPEG, an activation as float16 or 8-bit): a configuration is
(exit, partition, codec), with the codec's payload bytes for D_p, its
encoding added to the device part and its decoding to the edge part, and its
own held-out accuracy (from the model card; lossless codecs keep the exit's).

Algorithm 1, with the codec as a third knob: the most accurate configuration
that meets the deadline, ties to the faster. Without codecs this is the
paper's loop: exits from the most accurate down (by held-out accuracy, which
for the paper's model is also the order of exit index), for each the
partition of least predicted latency, the first that meets the deadline. If
none does, the answer says so (``feasible = False``) and carries the fastest
configuration of all as best effort.

Everything is precomputed when the model and profiles load: per-exit prefix
sums laid end to end in flat arrays, one entry per configuration, so a
decision is a handful of numpy operations over all of them at once (no
Python loop).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edgent_ros.codec_names import NONE, RAW, codec_problem, jpeg_quality
from edgent_ros.latency import CodecCost, SubModelLatency

MODES = ('edgent', 'device_only', 'edge_only', 'partition_only', 'jpeg_edge_only',
         'partition_only_codec')
# Accuracies closer than this are a tie (held-out accuracies are counts over
# the same images, computed along different paths).
TIE = 1e-9


@dataclass(frozen=True)
class Decision:
    """One plan: where to exit, where to split and how to code what crosses,
    and what it should cost."""

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
    codec: str = NONE

    @property
    def key(self) -> tuple[int, int, str]:
        return self.exit_point, self.partition, self.codec

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
    """One exit's inputs to the planner (index p = partition point 0..N):
    the raw configurations, and the coded ones (``codecs``)."""

    exit_point: int
    accuracy: float
    device_layers_ms: Sequence[float]
    edge_layers_ms: Sequence[float]
    upload_bytes: Sequence[int]   # N + 1 values; the last (device only) is 0
    result_bytes: int
    codecs: Sequence[CodecCost] = ()


class Planner:
    """Algorithm 1 over (exit, partition, codec) configurations, precomputed.

    Every configuration is one entry of flat arrays: an exit's raw
    configurations p = 0..N (N: device only, codec NONE) and its coded ones
    (a codec's encoding is device time, its decoding edge time). ``codecs``
    limits the coded ones to those named (None: every one given; raw is
    always there).
    """

    def __init__(self, exits: Sequence[ExitCosts], *, message_ms: float = 0.0,
                 overhead_ms: float = 0.0, codecs: Sequence[str] | None = None) -> None:
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
        self.codecs = None if codecs is None else tuple(codecs)
        cols: dict[str, list] = {k: [] for k in (
            'device', 'edge', 'upload', 'result', 'remote', 'accuracy', 'partition',
            'segment', 'codec')}
        self._offsets, self._ends, self._index = [], [], {}
        for seg, e in enumerate(self.exits):
            ed = np.asarray(e.device_layers_ms, dtype=np.float64)
            es = np.asarray(e.edge_layers_ms, dtype=np.float64)
            up = np.asarray(e.upload_bytes, dtype=np.float64)
            n = len(ed)
            if len(es) != n or len(up) != n + 1:
                raise ValueError(f'exit {e.exit_point}: {n} device, {len(es)} edge layer '
                                 f'latencies and {len(up)} upload sizes (need N, N, N+1)')
            if up[n] != 0:
                raise ValueError(f'exit {e.exit_point}: device only (p = N) must upload 0 bytes')
            prefix = np.concatenate([[0.0], np.cumsum(ed)])
            suffix = np.concatenate([np.cumsum(es[::-1])[::-1], [0.0]])
            rows = [(p, RAW if p < n else NONE, float(e.accuracy), up[p], 0.0, 0.0)
                    for p in range(n + 1)]
            for c in e.codecs:
                if c.codec == RAW or (self.codecs is not None and c.codec not in self.codecs):
                    continue
                why = codec_problem(c.codec, c.partition, n)
                if why:
                    raise ValueError(f'exit {e.exit_point}: {why}')
                if not (c.upload_bytes > 0 and c.encode_ms >= 0 and c.decode_ms >= 0):
                    raise ValueError(f'exit {e.exit_point}: codec {c.codec} at partition '
                                     f'{c.partition} needs bytes > 0 and times >= 0')
                rows.append((c.partition, c.codec, float(c.accuracy), float(c.upload_bytes),
                             float(c.encode_ms), float(c.decode_ms)))
            rows.sort(key=lambda r: r[0])  # stable: raw first at each partition
            self._offsets.append(len(cols['device']))
            for p, codec, acc, nbytes, enc, dec in rows:
                key = (e.exit_point, p, codec)
                if key in self._index:
                    raise ValueError(f'exit {e.exit_point}: codec {codec} at partition {p} '
                                     'given twice')
                self._index[key] = len(cols['device'])
                if p == n:
                    self._ends.append(len(cols['device']))
                cols['device'].append(prefix[p] + enc)
                cols['edge'].append(suffix[p] + dec)
                cols['upload'].append(nbytes)
                cols['result'].append(float(e.result_bytes) if p < n else 0.0)
                cols['remote'].append(1.0 if p < n else 0.0)
                cols['accuracy'].append(acc)
                cols['partition'].append(p)
                cols['segment'].append(seg)
                cols['codec'].append(codec)
        self._device_base = np.array(cols['device'])
        self._edge = np.array(cols['edge'])
        self.device_scale = 1.0
        self._device = self._device_base
        self._compute = self._device + self._edge
        self._factor = np.ones(len(self._device_base))
        self.remote_delay_ms = 0.0
        self.edge_wait_ms = 0.0
        self._upload_bits = np.array(cols['upload']) * 8.0
        self.transfer_scale = 1.0
        self._result_bits = np.array(cols['result']) * 8.0
        self._remote = np.array(cols['remote'])
        self._accuracy = np.array(cols['accuracy'])
        self._partition = np.array(cols['partition'])
        self._segment = np.array(cols['segment'])
        self._codec = list(cols['codec'])
        self._raw = np.array([c in (RAW, NONE) for c in self._codec])
        self._jpeg = np.array([jpeg_quality(c) is not None for c in self._codec])
        accuracy = np.array([e.accuracy for e in self.exits])
        # Exits most accurate first; among equals, the deeper exit (the paper's
        # order): the baselines' exit and the device's fallback order.
        index = np.array([e.exit_point for e in self.exits])
        self._order = np.lexsort((-index, -accuracy))

    @classmethod
    def from_latency(cls, latency: SubModelLatency, *, message_ms: float = 0.0,
                     codecs: Sequence[str] | None = None) -> Planner:
        exits = []
        for e in latency.card.exits:
            a = latency.exits[e.exit_point]
            exits.append(ExitCosts(
                exit_point=e.exit_point, accuracy=e.accuracy,
                device_layers_ms=a.device_layers, edge_layers_ms=a.edge_layers,
                upload_bytes=a.upload_bytes, result_bytes=a.result_bytes, codecs=a.codecs))
        return cls(exits, message_ms=message_ms, codecs=codecs)

    @property
    def configurations(self) -> list[tuple[int, int, str]]:
        """Every (exit, partition, codec) the planner searches, in its order."""
        return list(self._index)

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
        self._compute = self._device + self._edge + \
            self._remote * (self.remote_delay_ms + self.edge_wait_ms)

    def set_transfer_scale(self, scale: float) -> None:
        """Multiply every upload's predicted time by ``scale``: measured transfer
        time over bytes / estimated bandwidth, learnt online (a shaper's burst
        and DDS's headers make a message of a given size take a roughly
        constant factor longer or shorter than the estimate says)."""
        if not (np.isfinite(scale) and scale > 0):
            raise ValueError(f'transfer scale must be a positive number, got {scale}')
        self.transfer_scale = float(scale)

    def set_plan_factor(self, exit_point: int, partition: int, factor: float, *,
                        codec: str | None = None) -> None:
        """Multiply one configuration's predicted device compute (its encoding
        included) by ``factor`` (on top of the device scale): what that plan's
        frames measured on the device over what was predicted, learnt online
        for plans actually run (small and large layers miss their profile by
        different amounts)."""
        if not (np.isfinite(factor) and factor > 0):
            raise ValueError(f'plan factor must be a positive number, got {factor}')
        self._factor[self._flat(exit_point, partition, codec)] = factor
        self._rescale()

    def plan_factor(self, exit_point: int, partition: int, codec: str | None = None) -> float:
        return float(self._factor[self._flat(exit_point, partition, codec)])

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

    def set_edge_wait(self, wait_ms: float) -> None:
        """Add ``wait_ms`` to every remote configuration's edge time: the wait
        at an edge other devices share before a frame's tail starts (its
        published load, corrected by what this device's frames measured,
        edge_service.EdgeWait). A saturated edge so moves plans towards the
        device before their deadlines fail."""
        if not (np.isfinite(wait_ms) and wait_ms >= 0):
            raise ValueError(f'edge wait must be a number >= 0 ms, got {wait_ms}')
        self.edge_wait_ms = float(wait_ms)
        self._rescale()

    def clear_plan_factors(self) -> None:
        self._factor[:] = 1.0
        self._rescale()

    def _flat(self, exit_point: int, partition: int, codec: str | None = None) -> int:
        segment = self._segment_of(exit_point)
        n = len(self.exits[segment].device_layers_ms)
        if not 0 <= partition <= n:
            raise ValueError(f'partition {partition} is outside 0..{n} for exit {exit_point}')
        if codec is None or (codec == RAW and partition == n):
            codec = NONE if partition == n else RAW
        try:
            return self._index[(exit_point, partition, codec)]
        except KeyError:
            raise ValueError(f'exit {exit_point} has no configuration with codec {codec!r} at '
                             f'partition {partition}') from None

    def device_compute_ms(self, exit_point: int, partition: int,
                          codec: str | None = None) -> float:
        """Profiled (unscaled) device compute of layers [0, partition) of an
        exit, with the codec's encoding."""
        return float(self._device_base[self._flat(exit_point, partition, codec)])

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
        """Predicted ms of every configuration, laid end to end."""
        down = bandwidth_kbps if download_kbps is None else download_kbps
        return (self._compute + self.transfer_scale * self._upload_bits / bandwidth_kbps
                + self._result_bits / down + self._remote * self.message_ms + self.overhead_ms)

    @staticmethod
    def _check(bandwidth_kbps: float, deadline_ms: float, download_kbps: float | None) -> None:
        if not bandwidth_kbps > 0:
            raise ValueError(f'bandwidth must be > 0 kbps, got {bandwidth_kbps}')
        if not deadline_ms > 0:
            raise ValueError(f'deadline must be > 0 ms, got {deadline_ms}')
        if download_kbps is not None and not download_kbps > 0:
            raise ValueError(f'download bandwidth must be > 0 kbps, got {download_kbps}')

    def _pick(self, totals: np.ndarray, deadline_ms: float,
              among: np.ndarray | None = None) -> tuple[int, bool]:
        """Algorithm 1 over configurations: the most accurate that meets the
        deadline, ties to the faster; else the fastest (not feasible)."""
        if among is not None:
            totals = np.where(among, totals, np.inf)
        ok = totals <= deadline_ms
        if not ok.any():
            return int(np.argmin(totals)), False
        acc = np.where(ok, self._accuracy, -np.inf)
        return int(np.argmin(np.where(acc >= acc.max() - TIE, totals, np.inf))), True

    def plan(self, bandwidth_kbps: float, deadline_ms: float,
             download_kbps: float | None = None) -> Decision:
        """Algorithm 1: the most accurate configuration that meets the deadline."""
        self._check(bandwidth_kbps, deadline_ms, download_kbps)
        flat, feasible = self._pick(self.latencies(bandwidth_kbps, download_kbps), deadline_ms)
        return self._decision(flat, feasible, bandwidth_kbps, deadline_ms,
                              bandwidth_kbps if download_kbps is None else download_kbps)

    def plan_mode(self, mode: str, bandwidth_kbps: float, deadline_ms: float,
                  download_kbps: float | None = None) -> Decision:
        """Edgent, or a baseline on the most accurate exit: the paper's three
        (Fig. 9; raw float32 as the paper sends) ``device_only`` (p = N),
        ``edge_only`` (p = 0) and ``partition_only`` (its fastest partition,
        as Neurosurgeon would choose), and two with codecs:
        ``jpeg_edge_only`` (the input as a JPEG, the whole exit on the edge:
        sc2bench's bar; the most accurate quality that meets the deadline,
        ties to the faster) and ``partition_only_codec`` (any partition and
        codec of that exit, chosen as Edgent chooses: Neurosurgeon with
        quantisation)."""
        if mode == 'edgent':
            return self.plan(bandwidth_kbps, deadline_ms, download_kbps)
        if mode not in MODES:
            raise ValueError(f'unknown planner mode {mode!r} (modes: {", ".join(MODES)})')
        self._check(bandwidth_kbps, deadline_ms, download_kbps)
        down = bandwidth_kbps if download_kbps is None else download_kbps
        segment = int(self._order[0])
        exit_point = self.exits[segment].exit_point
        mine = self._segment == segment
        if mode == 'device_only':
            flat, feasible = self._ends[segment], None
        elif mode == 'edge_only':
            flat, feasible = self._flat(exit_point, 0, RAW), None
        else:
            totals = self.latencies(bandwidth_kbps, download_kbps)
            if mode == 'partition_only':
                flat = int(np.argmin(np.where(mine & self._raw, totals, np.inf)))
                feasible = None
            else:
                among = mine & (self._partition == 0)
                if mode == 'jpeg_edge_only' and (among & self._jpeg).any():
                    among = among & self._jpeg
                elif mode == 'partition_only_codec':
                    among = mine
                flat, feasible = self._pick(totals, deadline_ms, among)
        if feasible is None:
            feasible = self._total_at(flat, bandwidth_kbps, down) <= deadline_ms
        return self._decision(flat, feasible, bandwidth_kbps, deadline_ms, down)

    def device_alone(self, deadline_ms: float, mode: str = 'edgent') -> Decision:
        """What the device runs when the edge cannot be used: Algorithm 1 with
        every partition but p = N ruled out. The most accurate exit whose
        device-only latency meets the deadline, else the fastest one. A
        baseline ``mode`` has no early exit: its own exit (the most
        accurate), whole on the device, whatever the deadline."""
        if not deadline_ms > 0:
            raise ValueError(f'deadline must be > 0 ms, got {deadline_ms}')
        if mode != 'edgent':
            if mode not in MODES:
                raise ValueError(f'unknown planner mode {mode!r} (modes: {", ".join(MODES)})')
            end = self._ends[int(self._order[0])]
            return self._decision(end, self._total_at(end, 1.0, 1.0) <= deadline_ms, 1.0,
                                  deadline_ms, 1.0)
        totals = {seg: self._total_at(self._ends[seg], 1.0, 1.0)
                  for seg in range(len(self.exits))}
        for seg in self._order:
            if totals[int(seg)] <= deadline_ms:
                return self._decision(self._ends[int(seg)], True, 1.0, deadline_ms, 1.0)
        fastest = min(totals, key=totals.__getitem__)
        return self._decision(self._ends[fastest], False, 1.0, deadline_ms, 1.0)

    def device_exit_ms(self, mode: str = 'edgent') -> list[float]:
        """Each exit run whole on the device alone, predicted ms, in exit order
        (the fallback's prediction is one of them; 0: no such exit, or, for a
        baseline ``mode``, not one it runs: only its own exit)."""
        only = None if mode == 'edgent' else self.exits[int(self._order[0])].exit_point
        by_exit = {e.exit_point: self._total_at(self._ends[seg], 1.0, 1.0)
                   for seg, e in enumerate(self.exits)
                   if only is None or e.exit_point == only}
        top = max(e.exit_point for e in self.exits)
        return [by_exit.get(i, 0.0) for i in range(1, top + 1)]

    def evaluate(self, exit_point: int, partition: int, bandwidth_kbps: float,
                 deadline_ms: float, download_kbps: float | None = None, *,
                 codec: str | None = None) -> Decision:
        """The prediction for a given configuration, e.g. a plan in force
        (codec None: raw, or nothing sent for device only)."""
        flat = self._flat(exit_point, partition, codec)
        down = bandwidth_kbps if download_kbps is None else download_kbps
        total = self._total_at(flat, bandwidth_kbps, down)
        return self._decision(flat, total <= deadline_ms, bandwidth_kbps, deadline_ms, down)

    def evaluate_key(self, key: tuple[int, int, str], bandwidth_kbps: float,
                     deadline_ms: float, download_kbps: float | None = None) -> Decision:
        """``evaluate`` of a ``Decision.key``."""
        exit_point, partition, codec = key
        return self.evaluate(exit_point, partition, bandwidth_kbps, deadline_ms, download_kbps,
                             codec=codec)

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
            accuracy=float(self._accuracy[flat]), bandwidth_kbps=float(up),
            deadline_ms=float(deadline), total_ms=self._total_at(flat, up, down),
            device_ms=float(self._device[flat]) + self.overhead_ms,
            upload_ms=float(upload_ms),
            edge_ms=float(self._edge[flat]) + (self.edge_wait_ms if remote else 0.0),
            download_ms=float(download_ms), upload_bytes=int(self._upload_bits[flat] / 8),
            codec=self._codec[flat])


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
    now = planner.evaluate_key(current.key, candidate.bandwidth_kbps, candidate.deadline_ms)
    if not now.feasible:
        # Nothing in force meets the deadline: take a plan that does, or one
        # clearly faster (not one a hair faster, which flaps with the noise).
        return candidate.feasible or candidate.total_ms < (1.0 - hysteresis) * now.total_ms
    if not candidate.feasible:
        return False
    margin = planner.evaluate_key(candidate.key, candidate.bandwidth_kbps * (1.0 - hysteresis),
                                  candidate.deadline_ms)
    if not margin.feasible:
        return False
    if candidate.accuracy > current.accuracy:
        return True
    return candidate.accuracy == current.accuracy and \
        margin.total_ms < (1.0 - hysteresis) * now.total_ms

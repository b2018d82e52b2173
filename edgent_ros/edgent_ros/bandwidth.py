"""Uplink bandwidth estimation: samples, smoothing and change detection.

Samples come from two places:

- *passive*: a real tensor sent to the edge. The device knows the bytes and
  the round trip from send to reply; the edge reports how long it held the
  tensor (``edge_total_ms``). Transfer time = round trip - edge time.
- *probe*: a probe message of set size sent at a bounded rate while nothing
  else crosses the link (a device-only plan), answered at once by the edge.

A sample is ``bytes * 8 / transfer_ms`` kbps. Messages smaller than a few
packets say more about the link's latency and the shaper's burst than about
its rate, so samples under ``min_bytes`` are dropped.

The estimate is the harmonic mean of the samples of the current regime
(at most ``window`` of them): it is the right mean for rates (it averages
transfer *times*), and one fast outlier cannot inflate it. A transfer still
out after several times its expected time gives an *upper bound* (the link
carried at most its bytes in the time so far), revised as the time grows and
replaced by the measured rate when it lands. A bound is not a measurement to
average: the estimate never exceeds the lowest bound held. A two-sided CUSUM
on the log of the samples detects a change of regime: when it fires the
window restarts from the samples that caused it, so the estimate follows a
real step within a couple of samples but ignores noise.

Pure Python and numpy; never imports rclpy.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from dataclasses import dataclass

SOURCE_NONE, SOURCE_PASSIVE, SOURCE_PROBE, SOURCE_MIXED = 0, 1, 2, 3


@dataclass(frozen=True)
class Sample:
    kbps: float
    source: int
    time_s: float
    bound: bool = False  # an upper bound from a transfer still out
    mixed: bool = False  # landed after going overdue: a mean across a step down


MIN_SAMPLE_BYTES = 4096


def transfer_sample(nbytes: int, round_trip_ms: float, edge_ms: float, *,
                    min_bytes: int = MIN_SAMPLE_BYTES,
                    min_transfer_ms: float = 0.5) -> float | None:
    """kbps from one transfer, or None when the transfer says nothing useful."""
    transfer_ms = round_trip_ms - edge_ms
    if nbytes < min_bytes or not math.isfinite(transfer_ms) or transfer_ms < min_transfer_ms:
        return None
    return nbytes * 8.0 / transfer_ms


class Cusum:
    """Two-sided CUSUM on log-bandwidth around the current regime's mean."""

    def __init__(self, drift: float = 0.15, threshold: float = 0.8) -> None:
        self.drift = drift
        self.threshold = threshold
        self.high = 0.0
        self.low = 0.0

    def update(self, x: float, mean: float) -> bool:
        """Add one log-sample; True when a change is detected (then reset)."""
        self.high = max(0.0, self.high + x - mean - self.drift)
        self.low = max(0.0, self.low + mean - x - self.drift)
        if self.high > self.threshold or self.low > self.threshold:
            self.reset()
            return True
        return False

    def reset(self) -> None:
        self.high = self.low = 0.0


@dataclass(frozen=True)
class Estimate:
    kbps: float
    last_kbps: float
    source: int
    samples: int
    confidence: float
    change: bool
    capped: bool = False  # at the upper bound of a transfer still out


class BandwidthEstimator:
    """Harmonic mean of the current regime's recent samples, with CUSUM."""

    def __init__(self, window: int = 8, drift: float = 0.15, threshold: float = 0.8,
                 max_age_s: float = 30.0) -> None:
        if window < 1:
            raise ValueError(f'window must be at least 1, got {window}')
        self.window = window
        self.max_age_s = max_age_s
        self.cusum = Cusum(drift, threshold)
        self.samples: deque[Sample] = deque(maxlen=window)
        self.recent: deque[Sample] = deque(maxlen=2)
        self.changes = 0
        self._changed = False

    def add(self, kbps: float, source: int, time_s: float, *, bound: bool = False) -> bool:
        """Add a sample (``bound``: an upper bound from a transfer still out);
        True if it completed a change of regime."""
        if not (math.isfinite(kbps) and kbps > 0):
            raise ValueError(f'a bandwidth sample must be a positive number, got {kbps}')
        sample = Sample(kbps, source, time_s, bound)
        changed = False
        if not bound and any(s.mixed for s in self.samples):
            # A clean sample replaces the mean that straddled a step down.
            kept = [s for s in self.samples if not s.mixed]
            self.samples.clear()
            self.samples.extend(kept)
        if self.samples:
            mean = sum(math.log(s.kbps) for s in self.samples) / len(self.samples)
            if self.cusum.update(math.log(kbps), mean):
                # Restart the regime from the samples that tipped the CUSUM.
                self.samples.clear()
                for s in self.recent:
                    if abs(math.log(s.kbps) - math.log(kbps)) < self.cusum.threshold:
                        self.samples.append(s)
                self.changes += 1
                changed = True
        self.samples.append(sample)
        self.recent.append(sample)
        self._changed = self._changed or changed
        return changed

    def revise(self, time_s: float, kbps: float, *, bound: bool = False,
               mixed: bool = False) -> bool:
        """Replace the sample taken at ``time_s`` (a provisional one, e.g. an
        overdue bound) with a measured value or (``bound``) a tighter bound;
        False if it is no longer held. ``mixed``: the transfer landed after
        going overdue, so it measured the mean of a rate and a lower one that
        followed: it stands until the next clean sample, which replaces it.
        If the new value lies further from the rest of the regime than the
        CUSUM threshold (in log), a new regime starts from it:
        a bound that keeps falling while its transfer is still out is hard
        evidence of a step down, not noise to average away."""
        if not (math.isfinite(kbps) and kbps > 0):
            raise ValueError(f'a bandwidth sample must be a positive number, got {kbps}')
        for queue in (self.samples, self.recent):
            for i, s in enumerate(queue):
                if s.time_s == time_s:
                    queue[i] = Sample(kbps, s.source, s.time_s, bound, mixed)
        revised = [s for s in self.samples if s.time_s == time_s]
        if not revised:
            return False
        others = [s for s in self.samples if s.time_s != time_s]
        if others:
            mean = sum(math.log(s.kbps) for s in others) / len(others)
            if abs(math.log(kbps) - mean) > self.cusum.threshold:
                # One transfer measured (or, still out, bounds) the link far from
                # the regime: evidence enough of a new one, start it from this sample.
                self.samples.clear()
                self.samples.extend(revised)
                self.cusum.reset()
                self.changes += 1
                self._changed = True
        return True

    def discard(self, time_s: float) -> bool:
        """Forget the sample taken at ``time_s`` (found to be spoilt, e.g. a probe
        that shared the link with a frame); False if it was not held."""
        held = any(s.time_s == time_s for s in self.samples)
        for queue in (self.samples, self.recent):
            kept = [s for s in queue if s.time_s != time_s]
            queue.clear()
            queue.extend(kept)
        return held

    def expire(self, now_s: float) -> None:
        """Forget samples older than max_age_s (a link unused for long)."""
        while self.samples and now_s - self.samples[0].time_s > self.max_age_s:
            self.samples.popleft()

    def estimate(self, peek: bool = False) -> Estimate | None:
        """The current estimate; None before the first sample. ``change`` says
        whether a change was detected since the last call (``peek`` leaves
        that flag for the next caller)."""
        if not self.samples:
            return None
        rates = [s.kbps for s in self.samples]
        harmonic = len(rates) / sum(1.0 / r for r in rates)
        cap = min((s.kbps for s in self.samples if s.bound), default=math.inf)
        sources = {s.source for s in self.samples}
        source = sources.pop() if len(sources) == 1 else SOURCE_MIXED
        logs = [math.log(r) for r in rates]
        mean = sum(logs) / len(logs)
        spread = math.sqrt(sum((x - mean) ** 2 for x in logs) / len(logs))
        # More samples and less scatter: more trust. 1 sample of a clean link
        # gives 0.5, a full window of samples within 10% of each other ~0.9.
        confidence = (1.0 - 1.0 / (1.0 + len(rates))) * math.exp(-2.0 * spread)
        changed = self._changed
        if not peek:
            self._changed = False
        return Estimate(kbps=min(harmonic, cap), last_kbps=rates[-1], source=source,
                        samples=len(rates), confidence=confidence, change=changed,
                        capped=cap <= harmonic)


class ProbeScheduler:
    """When to send a probe.

    Only while no real transfer measured the link recently (``idle_s``), never
    faster than ``max_rate_hz``, and spending at most ``duty`` of the link's
    time on probes: at the current estimate the last probe took t, so the
    next one waits at least t / duty, but never more than MAX_INTERVAL_S
    (an estimate far too low must not stop the probes that would correct
    it). A fast link is probed often (a step is
    seen within a fraction of a second), a slow one rarely (a probe there
    takes long and would crowd out frames). While frames cross the link at a
    steady pace (small ones too, which measure nothing), a probe must land,
    with half its time again to spare, before the next frame is due: a frame
    queued behind a probe would be late for nothing. It is then made smaller
    to fit (``probe_bytes`` at most, ``min_bytes`` at least, or none goes).
    But once nothing measured the rate for ``stale_s`` (frames too small to,
    and an estimate so low that no probe seems to fit), the smallest probe
    goes anyway, early in the gap after a frame left: else a link that got
    faster would never be seen.
    """

    # A probe back in under this share of its expected time measured a faster
    # link (its samples scatter by a few percent on a steady link).
    HURRY = 0.8
    # The longest wait between probes, whatever the estimate: one collapsed
    # to 0.8 kbit/s (a link whose queue held seconds of other traffic) spaced
    # them 68 s apart by the duty rule, and a plan on the device alone sends
    # nothing else that measures, so the link's recovery went unseen. At most
    # one probe is out (a lost one is dropped after probe_timeout_s), so a
    # dead or crawling link is offered one 8 KB probe per 4 s (16 kbit/s).
    # With 10 s the fault bench's link came back to frames from the edge in
    # 6.4 s (the device withholds its trials while the estimate is low); with
    # 4 s, in 3.8 s (docs/runs.md).
    MAX_INTERVAL_S = 4.0

    def __init__(self, max_rate_hz: float = 1.0, idle_s: float = 1.0, duty: float = 1.0,
                 probe_bytes: int = 16384, min_bytes: int = MIN_SAMPLE_BYTES,
                 stale_s: float = 2.0) -> None:
        if not max_rate_hz > 0:
            raise ValueError(f'probe rate must be > 0 Hz, got {max_rate_hz}')
        if not 0 < duty <= 1:
            raise ValueError(f'probe duty must be in (0, 1], got {duty}')
        self.min_interval_s = 1.0 / max_rate_hz
        self.idle_s = idle_s
        self.duty = duty
        self.probe_bytes = probe_bytes
        self.min_bytes = min(min_bytes, probe_bytes)
        self.last_bytes = probe_bytes
        self.stale_s = stale_s
        self.last_probe_s = -math.inf
        self.last_passive_s = -math.inf
        self.last_measured_s = -math.inf  # a transfer or probe last measured the rate
        self.frame_sends: deque[float] = deque(maxlen=8)
        self.urgent = False  # an echo appeared: probe at once
        self.hold_until_s = -math.inf  # a probe followed at once waits for this

    def passive(self, now_s: float, sent_s: float | None = None, *,
                measured: bool = True) -> None:
        """A real transfer crossed the link; ``sent_s``: when it was sent (same
        clock as now_s), to learn the frames' pace; ``measured``: false for a
        transfer too small to measure the rate (it only gives the pace)."""
        if measured:
            self.last_passive_s = self.last_measured_s = now_s
        if sent_s is not None and (not self.frame_sends or
                                   abs(sent_s - self.frame_sends[-1]) > 1e-3):
            self.frame_sends.append(sent_s)

    def landed(self, took_s: float, kbps: float | None, nbytes: int | None = None, *,
               overdue: bool = False, now_s: float | None = None) -> None:
        """A probe (of ``nbytes``; default the full size) came back after
        ``took_s``. If that was under ``HURRY`` of what the estimate (``kbps``,
        before this probe) predicted, the link got faster; if it had gone
        overdue, slower; perhaps in the middle of the probe, which then
        measured a mix of the two rates: the next probe may go without waiting
        for the estimate's interval, to measure the new one. It still waits
        until the link has had its share of time since (``duty`` of the time
        this probe took, measured from ``now_s``): followed at once, probes
        that queue on a slow link each land sooner than a low estimate says,
        and then nothing but probes crosses it (measured on the testbed at
        100 kbit/s: a backlog of 15-30 KB held for 40 s, frames' activations
        waiting behind it)."""
        nbytes = self.probe_bytes if nbytes is None else nbytes
        if now_s is not None:
            self.last_measured_s = now_s
        if overdue or (kbps is not None and kbps > 0 and
                       took_s < self.HURRY * nbytes * 8.0 / kbps / 1000.0):
            self.last_probe_s = -math.inf
            if now_s is not None:
                self.hold_until_s = now_s + took_s * (1.0 - self.duty) / self.duty

    def edge_appeared(self) -> None:
        """An echo (re)appeared: the next probe goes at once, whatever the
        last probe or transfer was (they measured an edge that is gone, and
        reports of frames sent to it still come in)."""
        self.urgent = True

    def next_frame_s(self, now_s: float) -> float | None:
        """When the next frame transfer is due, if frames keep a steady pace
        (None: too few, or they stopped: a device-only plan)."""
        sends = sorted(self.frame_sends)
        if len(sends) < 3:
            return None
        gaps = sorted(b - a for a, b in itertools.pairwise(sends))
        period = gaps[len(gaps) // 2]
        if period <= 0 or now_s - sends[-1] > 2.5 * period:
            return None
        return sends[-1] + period * max(1, math.ceil((now_s - sends[-1]) / period))

    def interval_s(self, kbps: float | None) -> float:
        """Least time after the last probe before the next, at an estimated
        bandwidth (None: unknown)."""
        if kbps is None or not kbps > 0:
            return self.min_interval_s
        return max(self.min_interval_s, min(self.MAX_INTERVAL_S,
                                            self.last_bytes * 8.0 / kbps / 1000.0 / self.duty))

    def probe_now(self, now_s: float, kbps: float | None = None) -> int:
        """The bytes of the probe to send now; 0: none now."""
        if self.urgent:
            self.urgent, self.last_probe_s, self.last_bytes = False, now_s, self.probe_bytes
            return self.probe_bytes
        if now_s < self.hold_until_s or now_s - self.last_passive_s < self.idle_s:
            return 0
        if now_s - self.last_probe_s < self.interval_s(kbps):
            return 0
        nbytes = self.probe_bytes
        next_frame = self.next_frame_s(now_s)
        if next_frame is not None and kbps is not None and kbps > 0:
            # The largest probe that lands, with half its time to spare, before the frame.
            fits = int((next_frame - now_s) / 1.5 * kbps * 1000.0 / 8.0)
            if fits < self.min_bytes:
                last = max(self.frame_sends)
                if now_s - self.last_measured_s < self.stale_s or \
                        now_s - last > 0.25 * (next_frame - last):
                    return 0
                fits = self.min_bytes  # stale: the smallest, just after a frame left
            nbytes = min(nbytes, fits)
        self.last_probe_s = now_s
        self.last_bytes = nbytes
        return nbytes


class ProbeLedger:
    """Which probes crossed the link together with a frame.

    The link is first in, first out. A probe sent before a frame and not
    landed by then was *ahead* of it: the frame waited for the probe's bytes,
    so the frame's sample must count them, while the probe's own sample
    stands. A probe sent while a frame was out was *behind* it: it measured a
    share of the link, and its sample is dropped. Times are seconds on the
    ROS clock that the device stamps its transfers with (the monitor's too:
    both nodes run on one computer, under the same use_sim_time).
    """

    def __init__(self, keep: int = 16) -> None:
        self.flying: dict[int, tuple[float, int]] = {}  # seq -> (sent, bytes)
        # (sent, landed, bytes, the time of its sample in the estimator or None)
        self.landed: deque[tuple[float, float, int, float | None]] = deque(maxlen=keep)
        self.spoilt: set[int] = set()

    def sent(self, seq: int, sent: float, nbytes: int) -> None:
        self.flying[seq] = (sent, nbytes)

    def lost(self, seq: int) -> None:
        self.flying.pop(seq, None)
        self.spoilt.discard(seq)

    def land(self, seq: int, landed: float, sample_time: float | None) -> bool:
        """A probe landed, and its sample (if any) went into the estimator at
        ``sample_time``; False if a frame spoilt it (drop its sample)."""
        sent, nbytes = self.flying.pop(seq, (landed, 0))
        if seq in self.spoilt:
            self.spoilt.discard(seq)
            self.landed.append((sent, landed, nbytes, None))
            return False
        self.landed.append((sent, landed, nbytes, sample_time))
        return True

    def frame(self, frame_sent: float) -> tuple[int, bool, list[int], list[float]]:
        """A frame sent at ``frame_sent`` was measured (landed, or bounded while
        still out). Returns the bytes of the probes ahead of it, whether one of
        them is still out, the probes still out behind it (now spoilt) and the
        sample times of those behind it that already landed (to discard)."""
        ahead, ahead_out, behind, discard = 0, False, [], []
        for seq, (sent, nbytes) in self.flying.items():
            if sent <= frame_sent:
                ahead += nbytes
                ahead_out = True
            elif seq not in self.spoilt:
                self.spoilt.add(seq)
                behind.append(seq)
        for i, (sent, landed, nbytes, sample_time) in enumerate(self.landed):
            if landed <= frame_sent:
                continue
            if sent <= frame_sent:
                ahead += nbytes
            elif sample_time is not None:
                discard.append(sample_time)
                self.landed[i] = (sent, landed, nbytes, None)
        return ahead, ahead_out, behind, discard


def transfer_report_kbps(nbytes: int, round_trip_ms: float, edge_held_ms: float, *,
                         still_out: bool, given_up: bool, expected_ms: float, held: bool,
                         estimate_kbps: float | None,
                         min_bytes: int = MIN_SAMPLE_BYTES) -> float | None:
    """What one of the device's transfer reports (``msg/TransferReport``) says
    of the bandwidth, kbps, or None when it says nothing of the rate (it still
    tells when a frame left). The one place that decides what counts:

    - one that landed gives ``transfer_sample`` (round trip less the edge's
      time), unless it is smaller than ``min_bytes`` (its time is mostly the
      link's latency, not its rate);
    - one still out gives an upper bound (``bytes * 8 / time so far``) once
      it is overdue (``overdue_bound`` against ``expected_ms``), once the
      device gave up waiting for it, or while a bound of it is held
      (``held``: the new one revises it); a first bound no lower than the
      estimate (``estimate_kbps``) says nothing new;
    - but one smaller than ``min_bytes`` bounds the link only once the device
      gave up on it (a few times its expected time is latency's scatter for
      so few bytes; a missed reply wait is not). That it has not landed is
      the one thing such a transfer says of the link, and it must not be
      lost: on the testbed at 50 kbit/s the link's queue held seconds of
      other traffic (DDS discovery), 1.1 KB JPEG frames took 3.8-5 s, and the
      estimate, made of probes alone, kept saying that they land in 0.2 s.
      When one that was bounded lands, its effective rate (bytes over the
      transfer time) revises its bound: what frames of its size get now.
    """
    small = nbytes < min_bytes
    if not still_out:
        if small:
            # Landed after bounding the link: what its bytes got, latency and all.
            return transfer_sample(nbytes, round_trip_ms, edge_held_ms,
                                   min_bytes=0) if held else None
        return transfer_sample(nbytes, round_trip_ms, edge_held_ms, min_bytes=min_bytes)
    if not (math.isfinite(round_trip_ms) and round_trip_ms > 0):
        return None
    at_most = nbytes * 8.0 / round_trip_ms
    if held:
        return at_most
    if small and not given_up:
        return None
    if not given_up and overdue_bound(nbytes, round_trip_ms, expected_ms) is None:
        return None
    if estimate_kbps is not None and 0 < estimate_kbps <= at_most:
        return None
    return at_most


def overdue_bound(nbytes: int, elapsed_ms: float, expected_ms: float, *,
                  factor: float = 3.0, min_ms: float = 100.0) -> float | None:
    """An upper bound on the bandwidth from a transfer still unanswered.

    When a transfer expected to take ``expected_ms`` has been out ``factor``
    times as long (and at least ``min_ms``), the link carries at most
    ``nbytes * 8 / elapsed_ms`` kbps now: a step down shows up after a few
    times the expected time instead of after the whole, much slower,
    transfer. It is provisional: when the transfer lands, its measured rate
    replaces it (``BandwidthEstimator.revise``). None while not overdue.
    """
    if elapsed_ms < max(min_ms, factor * expected_ms):
        return None
    return nbytes * 8.0 / elapsed_ms

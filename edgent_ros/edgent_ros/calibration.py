"""Online calibration of the planner from the frames it planned (no ROS here).

Profiles are made in a tight loop; a node running among callbacks is slower,
and every frame pays costs no layer profile holds. From each measured frame
the ``Calibrator`` learns, and sets on its ``Planner``:

1. the device scale: the device's compute over its profile (median of the
   last 30 frames; moved when off by more than 15%);
2. a factor per (exit, partition) actually run: its frames' device time over
   the scaled prediction (median of the last 10, from 3 frames; moved when
   off by more than 5%);
3. the transfer scale: uploads of ``MIN_SAMPLE_BYTES`` or more (smaller ones
   cross in the link's burst) over bytes / the bandwidth estimated when they
   ran (median of the last 20; moved when off by more than 5%);
4. the per-frame overhead: the median residual of measured over predicted
   latency (moved when off by more than both 2 ms and a fifth);
5. the planning margin: how much slower than predicted the frames at
   ``margin_quantile`` ran (0..0.5); the deadline planned against is
   shrunk by it;
6. a delay for every remote configuration: a frame that the device
   answered alone after waiting for the edge in vain (a fallback with
   ``transfer_ms``, the wait, above 0, also one then answered as late
   without running; a frame answered alone at once, the edge taken as
   down, teaches nothing) took at least its latency by its
   plan's route, that much more than predicted. The link (or the edge)
   answered that much later than modelled, so every remote plan is
   predicted that much slower (one plan at a time, the planner went through
   partitions 17, 18 and 19 of the same exit, a missed frame each) until a
   frame comes back from the edge, or the bandwidth estimate rises above
   DELAY_KBPS_FACTOR times both the one it was learnt at and the one the
   failed plan assumed (a better link; a falling estimate only confirms
   it), or as soon as the estimate falls below a tenth of the failed plan's
   rate (``DELAY_DROP_FACTOR``: the link dropped or went away, which
   explains the failure, and the estimate now prices remote plans by
   itself; on the testbed a failed frame's wait pulled the estimate down
   threefold, not tenfold), or it has been held ``DELAY_HOLD_S``: then
   remote plans are tried
   again (a link that dropped and came back to the rate the failed plan
   assumed would otherwise never be tried: the demo's device stayed on
   the device at 10 Mbit/s after a drop to 300 kbit/s). A delay learnt
   again before any frame came back from the edge since the retry is held
   twice as long, up to ``DELAY_HOLD_MAX_S``: a link that stays bad costs
   a late frame (and those queued behind it) per retry, retries growing
   apart; a frame back from the edge resets the hold. A wait the estimate
   explains when the frame falls back may have pulled that estimate down
   itself (a bound): the frame is kept, and when
   the estimate rises again the wait it no longer explains becomes the
   delay (on the testbed at 50 kbps a JPEG plan otherwise came back with
   every probe, a late frame each time). The other items learn only from
   frames the edge answered, so without it a plan whose every frame falls
   back (a link that carries its estimated rate but queues) was chosen
   again and again.

Items 1 and 3-5 are looked at every 10 frames; item 2 on every frame. Each
plan's prediction is recorded when it is published (``record``), so a frame
is compared with what the planner said, not with what came back with it.
``observe`` says whether anything moved: at most one re-plan per frame.
"""

from __future__ import annotations

import math
import statistics
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from edgent_ros.bandwidth import MIN_SAMPLE_BYTES
from edgent_ros.codec_names import jpeg_quality
from edgent_ros.planner import Decision, PlanBasis, Planner

RECORDED_PLANS = 64
DELAY_KBPS_FACTOR = 1.5  # the learnt delay holds until the estimate rises this much
DELAY_STEP_MS = 5.0  # a learnt delay moves by more than this, or not at all
DELAY_DROP_FACTOR = 10.0  # an estimate this far below the failed plan's rate explains it
DELAY_HOLD_S = 60.0  # a learnt delay is tried again (dropped) after this long ...
DELAY_HOLD_MAX_S = 600.0  # ... doubled while the retries fail, up to this


@dataclass(frozen=True)
class FrameResult:
    """What the device measured on one frame (the calibration's input)."""

    plan_id: int
    exit_point: int
    partition: int
    latency_ms: float
    device_ms: float
    transfer_ms: float
    fallback: bool = False
    skipped: bool = False


def _quiet(kind: str, text: str) -> None:
    pass


def _ratio_key(key: tuple[int, int, str | None]) -> tuple[int, int, str | None]:
    """Where a configuration's device ratios are pooled: its own, but at
    partition 0 the codec's (exit 0 for any exit: coding the input costs the
    same whichever exit the edge then runs)."""
    return (0, 0, key[2]) if key[1] == 0 else key


class Calibrator:
    """The planner's online calibration: its state, and the rules that move it.

    ``log(kind, text)`` hears of each change (kinds: device_scale,
    transfer_scale, overhead, margin). Switched off (``enabled`` False) it
    leaves the planner on its profiles alone, as if it had never learnt.
    """

    def __init__(self, planner: Planner, *, margin_quantile: float = 0.95,
                 enabled: bool = True,
                 log: Callable[[str, str], None] = _quiet,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.planner = planner
        self.clock = clock
        # When the remote delay was set (None: none held), how long it is
        # held, and when one was last dropped for having been held that long.
        self.delay_since: float | None = None
        self.delay_hold_s = DELAY_HOLD_S
        self.retrying = False  # a held delay was dropped; no edge frame came back since
        self.margin_quantile = float(margin_quantile)
        self.enabled = enabled
        self.log = log
        self.margin = 0.0
        # plan id -> what its prediction was made with, and the prediction
        self.plans: dict[int, tuple[PlanBasis, float]] = {}
        self.residuals: deque[float] = deque(maxlen=30)
        self.device_ratios: deque[float] = deque(maxlen=30)
        self.transfer_ratios: deque[float] = deque(maxlen=20)
        self.ratios: deque[float] = deque(maxlen=40)  # measured / predicted latency
        # (exit, partition, codec) -> its frames' device time over the prediction
        # (at partition 0 pooled over exits: _ratio_key)
        self.plan_ratios: dict[tuple[int, int, str | None], deque[float]] = {}
        self.fresh_residuals = 0
        # plan id -> (exit, partition, remote); the bandwidth estimate the remote
        # delay (item 6) was learnt at (None: no delay)
        self.keys: dict[int, tuple[int, int, bool, str]] = {}
        self.delay_kbps: float | None = None
        # The last remote frame that waited for the edge in vain: (exit,
        # partition, codec, its wait ms, the bandwidth its plan assumed)
        self.failed: tuple[int, int, str, float, float] | None = None

    # --- what the planner said ---------------------------------------------------
    def record(self, plan_id: int, d: Decision) -> None:
        """Keep a published plan's prediction and what it was made with (the
        last ``RECORDED_PLANS`` plans)."""
        p = self.planner
        remote = d.partition < d.num_layers
        basis = PlanBasis(
            overhead_ms=p.overhead_ms, device_ms=d.device_ms - p.overhead_ms,
            device_base_ms=p.device_compute_ms(d.exit_point, d.partition, d.codec),
            upload_ms=d.upload_ms - (p.message_ms if remote else 0.0),
            upload_bytes=d.upload_bytes, transfer_scale=p.transfer_scale,
            bandwidth_kbps=d.bandwidth_kbps)
        self.plans[plan_id] = (basis, d.total_ms)
        self.keys[plan_id] = (d.exit_point, d.partition, remote, d.codec)
        while len(self.plans) > RECORDED_PLANS:
            oldest = min(self.plans)
            self.plans.pop(oldest)
            self.keys.pop(oldest, None)

    def planning_deadline_ms(self, deadline_ms: float) -> float:
        """The deadline to plan against: shrunk by the margin."""
        return deadline_ms / (1.0 + self.margin)

    # --- what the frames measured ----------------------------------------------------
    def observe(self, frame: FrameResult, bandwidth_kbps: float) -> bool:
        """Learn from one frame measured under a recorded plan, at the bandwidth
        estimated now; True if the planner's figures moved (plan again)."""
        if not self.enabled or frame.plan_id not in self.plans:
            return False
        expired = self._expire_delay()
        return self._observe(frame, bandwidth_kbps) or expired

    def _observe(self, frame: FrameResult, bandwidth_kbps: float) -> bool:
        if frame.skipped:
            # Not run: nothing to learn but, for one answered as late after
            # waiting for the edge in vain, that wait (item 6).
            waited = frame.fallback and math.isfinite(frame.transfer_ms) and \
                frame.transfer_ms > 0
            return waited and self._learn_delay(frame, bandwidth_kbps)
        if not (math.isfinite(frame.latency_ms) and math.isfinite(frame.device_ms)):
            return False
        got = self.keys.get(frame.plan_id)
        # The plan's configuration (its codec) when the frame ran it; else
        # (a fallback exit) raw, or nothing sent.
        codec = got[3] if got and got[:2] == (frame.exit_point, frame.partition) else None
        key = (frame.exit_point, frame.partition, codec)
        scale_now = self.planner.device_scale
        if frame.fallback:
            # Answered alone after waiting for the edge: a lower bound on the
            # plan's latency by the edge, and its device time calibrates the
            # fallback exit.
            delayed = self._learn_delay(frame, bandwidth_kbps)
            try:
                base = self.planner.device_compute_ms(*key)
            except ValueError:
                return delayed
            if base * scale_now < 1.0:
                return delayed
            self.plan_ratios.setdefault(_ratio_key(key), deque(maxlen=10)).append(
                frame.device_ms / (base * scale_now))
            return self._update_plan_factor(key) or delayed
        cleared = self._clear_delay(frame.plan_id)
        basis, predicted_ms = self.plans[frame.plan_id]
        # What bytes / bandwidth said at the estimate now (the frame ran now,
        # under a plan perhaps made at another bandwidth), without the scale.
        upload_raw = basis.upload_at(bandwidth_kbps)
        if basis.upload_bytes >= MIN_SAMPLE_BYTES and upload_raw >= 5.0 and \
                frame.transfer_ms > 0:
            self.transfer_ratios.append(min(2.0, max(0.5, frame.transfer_ms / upload_raw)))
        changed = False
        if basis.device_base_ms * scale_now >= 1.0:
            # The device scale is the layers' speed: a frame that ran no layer
            # on the device (partition 0: its device time is preparing and
            # coding the input, a profiled millisecond against a measured
            # twenty on the testbed) calibrates its own plan, not every layer.
            if frame.partition > 0:
                self.device_ratios.append(frame.device_ms / basis.device_base_ms)
            self.plan_ratios.setdefault(_ratio_key(key), deque(maxlen=10)).append(
                frame.device_ms / (basis.device_base_ms * scale_now))
            changed = self._update_plan_factor(key)
        # The prediction without the overhead, under today's device calibration.
        device_now = basis.device_base_ms * scale_now * self.planner.plan_factor(*key)
        upload_now = basis.upload_at(bandwidth_kbps, self.planner.transfer_scale)
        raw = predicted_ms - basis.overhead_ms - basis.device_ms + device_now \
            - basis.upload_ms + upload_now
        self.residuals.append(frame.latency_ms - raw)
        predicted_now = raw + self.planner.overhead_ms
        if predicted_now > 0:
            # One slow frame in a bandwidth step is not the spread: clip at 1.5x.
            self.ratios.append(min(1.5, frame.latency_ms / predicted_now))
        self.fresh_residuals += 1
        changed = changed or cleared
        if self.fresh_residuals < 10:
            return changed
        self.fresh_residuals = 0
        return self._update_scales() or changed

    def _learn_delay(self, frame: FrameResult, bandwidth_kbps: float) -> bool:
        """Item 6: a frame of a remote plan answered on the device after
        waiting ``transfer_ms`` for the edge: its plan's route by the edge
        would have taken at least its device part and that wait. True if the
        remote delay moved."""
        got = self.keys.get(frame.plan_id)
        if got is None or not got[2] or not (math.isfinite(bandwidth_kbps) and
                                              bandwidth_kbps > 0):
            return False
        if not (math.isfinite(frame.transfer_ms) and frame.transfer_ms > 0):
            return False  # answered alone at once (the edge taken as down): no wait measured
        exit_point, partition, _, codec = got
        # Kept until the delay goes: an estimate that explains the wait now
        # may be one the wait itself pulled down (a bound); when it rises
        # again, what it no longer explains is the delay (``bandwidth``).
        planned = self.plans[frame.plan_id][0].bandwidth_kbps
        self.failed = (exit_point, partition, codec, float(frame.transfer_ms),
                       planned if math.isfinite(planned) else bandwidth_kbps)
        return self._delay_at(bandwidth_kbps, f'a frame of exit {exit_point}, partition '
                              f'{partition} waited for the edge in vain and was answered on '
                              f'the device at {frame.latency_ms:.0f} ms')

    def _delay_at(self, bandwidth_kbps: float, why: str) -> bool:
        """Set the remote delay from the failed frame kept (``self.failed``):
        its wait beyond its route's remote part at ``bandwidth_kbps``. True if
        it moved (only up: a rising estimate does not make the wait shorter)."""
        if self.failed is None:
            return False
        exit_point, partition, codec, waited_ms, planned_kbps = self.failed
        p = self.planner
        held = p.remote_delay_ms
        try:
            e = p.evaluate(exit_point, partition, bandwidth_kbps, 1.0, codec=codec)
        except ValueError:
            return False
        # The edge's part of the route (transfers and edge) took longer than
        # the frame waited for it; not necessarily as long as the frame took in
        # all, which includes finishing it on the device after the wait (a
        # frame queued once behind a probe would otherwise price every remote
        # plan as slow as the device's fallback).
        delay = waited_ms - (e.total_ms - held - e.device_ms)
        if delay <= held + DELAY_STEP_MS:
            return False
        now = self.clock()
        if held == 0.0:
            if self.retrying:  # tried again, and failed again: wait longer next time
                self.delay_hold_s = min(DELAY_HOLD_MAX_S, 2.0 * self.delay_hold_s)
                self.retrying = False
            self.delay_since = now
        p.set_remote_delay(delay)
        # It holds until the link beats both the estimate now and the one the
        # failed plan assumed (a plan made at 30 kbps on the testbed failed,
        # its wait pulled the estimate to a 10 kbps bound, and 15 would have
        # cleared the delay for the same plan to fail again).
        self.delay_kbps = max(bandwidth_kbps, planned_kbps, self.delay_kbps or 0.0)
        self.log('remote_delay', f'{why}: planning every remote plan {delay:.0f} ms slower '
                 'than the link and the edge predict')
        return True

    def _clear_delay(self, plan_id: int) -> bool:
        """A frame of a remote plan came back from the edge: the delay goes."""
        got = self.keys.get(plan_id)
        if got is None or not got[2]:
            return False
        self.delay_hold_s, self.retrying = DELAY_HOLD_S, False
        if self.failed is None:
            return False
        held = self.planner.remote_delay_ms > 0
        self._forget_delays()
        return held

    def _expire_delay(self) -> bool:
        """Drop a delay held ``delay_hold_s``: remote plans are tried again.
        True if one was dropped."""
        if self.delay_since is None or self.planner.remote_delay_ms == 0.0:
            return False
        now = self.clock()
        if now - self.delay_since < self.delay_hold_s:
            return False
        self.log('remote_delay', f'held {now - self.delay_since:.0f} s: remote plans are '
                 'tried again')
        self._forget_delays()
        self.retrying = True
        return True

    def bandwidth(self, kbps: float) -> bool:
        """A new bandwidth estimate: the remote delay goes if it rose above
        DELAY_KBPS_FACTOR times the higher of the estimate the delay was
        learnt at and the one the failed plan assumed (a better link: try
        it), or fell below 1/DELAY_DROP_FACTOR of the failed plan's rate (a
        drop that explains the failure); short of that, with no delay held,
        the failed frame's wait that this estimate no longer explains becomes
        the delay. True if the delay
        moved."""
        expired = self._expire_delay()
        if self.failed is None or not (math.isfinite(kbps) and kbps > 0):
            return expired
        planned = self.failed[4]
        above = max(self.delay_kbps or 0.0, planned)
        # Held or kept (a wait the estimate explained): either way the drop explains it.
        dropped = kbps * DELAY_DROP_FACTOR < planned
        if dropped:
            self.log('remote_delay', f'the estimate fell to {kbps:.0f} kbps, a tenth of the '
                     f'{planned:.0f} kbps the failed plan assumed: the link explains it')
            self.delay_hold_s, self.retrying = DELAY_HOLD_S, False
        if dropped or kbps > DELAY_KBPS_FACTOR * above:
            held = self.planner.remote_delay_ms > 0
            self._forget_delays()
            return held
        if self.planner.remote_delay_ms > 0:
            return False  # held: not raised with every estimate
        return self._delay_at(kbps, f'the estimate rose to {kbps:.0f} kbps, which does not '
                              f'explain a frame\'s {self.failed[3]:.0f} ms wait for the edge')

    def _update_scales(self) -> bool:
        p, changed = self.planner, False
        if len(self.device_ratios) >= 5:
            scale = max(1e-6, statistics.median(self.device_ratios))
            if abs(math.log(scale / p.device_scale)) > math.log(1.15):
                self.log('device_scale', f'device compute {scale:.3g}x its profile (was '
                         f'{p.device_scale:.3g}x)')
                p.set_device_scale(scale)
                self._forget_relative()
                changed = True
        if len(self.transfer_ratios) >= 5:
            transfer = statistics.median(self.transfer_ratios)
            if abs(math.log(transfer / p.transfer_scale)) > math.log(1.05):
                self.log('transfer_scale', f'transfers take {transfer:.2f}x bytes / bandwidth')
                p.set_transfer_scale(transfer)
                self.residuals.clear()
                self.ratios.clear()
                changed = True
        if self.residuals:
            overhead = max(0.0, statistics.median(self.residuals))
            if abs(overhead - p.overhead_ms) > max(2.0, 0.2 * p.overhead_ms):
                self.log('overhead', f'per-frame overhead now {overhead:.1f} ms (was '
                         f'{p.overhead_ms:.1f} ms)')
                p.set_overhead(overhead)
                self.ratios.clear()
                changed = True
        return self._update_margin() or changed

    def _update_plan_factor(self, key: tuple[int, int, str | None]) -> bool:
        """Set a configuration's device factor from its frames (3 or more);
        True if it moved by more than 5%. At partition 0 (no layer on the
        device: its device time is coding the input) the factor is the
        codec's at every exit, and a JPEG quality with no frames of its own
        takes it from the quality that has them (the same encoder on the
        same input)."""
        ratios = self.plan_ratios.get(_ratio_key(key))
        if not ratios or len(ratios) < 3:
            return False
        factor = statistics.median(ratios)
        if abs(math.log(factor / self.planner.plan_factor(*key))) < math.log(1.05):
            return False
        exit_point, partition, codec = key
        if partition != 0 or codec is None:
            self.planner.set_plan_factor(exit_point, partition, factor, codec=codec)
            return True
        jpeg = jpeg_quality(codec) is not None
        for e, p, c in self.planner.configurations:
            if p == 0 and (c == codec or (jpeg and jpeg_quality(c) is not None and
                                          (0, 0, c) not in self.plan_ratios)):
                self.planner.set_plan_factor(e, 0, factor, codec=c)
        return True

    def _update_margin(self) -> bool:
        """The margin from the frames at ``margin_quantile`` (0 when they ran as
        predicted or faster); True if it moved by 0.03 or more."""
        if len(self.ratios) < 10:
            return False
        ordered = sorted(self.ratios)
        q = ordered[min(len(ordered) - 1, int(self.margin_quantile * len(ordered)))]
        margin = min(0.5, max(0.0, q - 1.0))
        if abs(margin - self.margin) < 0.03:
            return False
        self.log('margin', f'planning margin now {100 * margin:.0f}% (frames at the '
                 f'{self.margin_quantile:g} quantile ran {q:.2f}x predicted)')
        self.margin = margin
        return True

    def _forget_relative(self, residuals: bool = True) -> None:
        """Drop what was measured relative to the old device scale."""
        if residuals:
            self.residuals.clear()
        self.ratios.clear()
        self.plan_ratios.clear()
        self.planner.clear_plan_factors()

    def _forget_delays(self) -> None:
        self.delay_since = None
        self.delay_kbps = None
        self.failed = None
        self.planner.set_remote_delay(0.0)

    # --- changes from outside ------------------------------------------------------------
    def set_margin_quantile(self, quantile: float) -> None:
        """Plan for another share of frames; the margin follows from the frames
        already measured."""
        self.margin_quantile = float(quantile)
        self._update_margin()

    def set_enabled(self, enabled: bool) -> None:
        """Switch the calibration on or off. Off forgets everything learnt and
        puts the planner back on its profiles; on learns from scratch."""
        if enabled == self.enabled:
            return
        self.enabled = enabled
        p = self.planner
        p.set_device_scale(1.0)
        p.set_transfer_scale(1.0)
        p.set_overhead(0.0)
        self.device_ratios.clear()
        self.transfer_ratios.clear()
        self._forget_relative()
        self._forget_delays()
        self.fresh_residuals = 0
        self.margin = 0.0

    def new_profiles(self, planner: Planner) -> None:
        """Plan with new profiles: their device calibration starts again."""
        self.planner = planner
        self.device_ratios.clear()
        self._forget_relative()
        self._forget_delays()
        self.margin = 0.0

    def new_message_latency(self, planner: Planner) -> None:
        """Plan with another per-message latency: the scales and the overhead
        carry over; what was measured per plan and the spread do not."""
        old, self.planner = self.planner, planner
        planner.set_overhead(old.overhead_ms)
        planner.set_device_scale(old.device_scale)
        planner.set_transfer_scale(old.transfer_scale)
        self._forget_relative(residuals=False)
        self._forget_delays()

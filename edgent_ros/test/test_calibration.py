"""The planner's online calibration, on a small made-up model (no ROS, no DDS).

Frames are made from a plan's recorded prediction and a "true" device: its
compute a given factor over the profile, transfers a given factor over
bytes / bandwidth, and a fixed cost per frame the profiles miss.
"""

from __future__ import annotations

import math

import pytest

from edgent_ros.bandwidth import MIN_SAMPLE_BYTES
from edgent_ros.calibration import (
    DELAY_HOLD_MAX_S,
    DELAY_HOLD_S,
    RECORDED_PLANS,
    Calibrator,
    FrameResult,
)
from edgent_ros.latency import CodecCost
from edgent_ros.planner import Decision, ExitCosts, Planner

BIG = 4 * MIN_SAMPLE_BYTES  # an upload that says something of the bandwidth


def small_planner(message_ms: float = 0.0) -> Planner:
    return Planner([
        ExitCosts(exit_point=1, accuracy=0.6, device_layers_ms=[10.0, 10.0, 10.0],
                  edge_layers_ms=[1.0, 1.0, 1.0], upload_bytes=[BIG, BIG, 1000, 0],
                  result_bytes=40),
        ExitCosts(exit_point=2, accuracy=0.8, device_layers_ms=[20.0, 20.0, 20.0, 20.0],
                  edge_layers_ms=[2.0, 2.0, 2.0, 2.0],
                  upload_bytes=[BIG, BIG, BIG, 2000, 0], result_bytes=40),
    ], message_ms=message_ms)


def published(cal: Calibrator, plan_id: int, exit_point: int, partition: int,
              kbps: float = 1000.0) -> Decision:
    d = cal.planner.evaluate(exit_point, partition, kbps, 1e9)
    cal.record(plan_id, d)
    return d


def frame(plan_id: int, d: Decision, *, device: float = 1.0, transfer: float = 1.0,
          extra_ms: float = 0.0, kbps: float | None = None, **kw: object) -> FrameResult:
    """A frame of plan ``d`` on a device ``device`` times its profile, with
    transfers ``transfer`` times bytes / bandwidth (at ``kbps``, by default
    the plan's), plus ``extra_ms`` the profiles miss."""
    device_ms = device * d.device_ms  # (recorded with no overhead)
    bits = d.upload_bytes * 8.0
    transfer_ms = transfer * bits / (kbps or d.bandwidth_kbps)
    latency = device_ms + transfer_ms + d.edge_ms + d.download_ms + extra_ms
    return FrameResult(plan_id=plan_id, exit_point=d.exit_point, partition=d.partition,
                       latency_ms=latency, device_ms=device_ms, transfer_ms=transfer_ms, **kw)


def feed(cal: Calibrator, frames: list[FrameResult], kbps: float = 1000.0) -> list[bool]:
    return [cal.observe(f, kbps) for f in frames]


def test_a_slower_device_is_learnt_as_one_scale_after_ten_frames() -> None:
    cal = Calibrator(small_planner())
    d = published(cal, 1, 2, 4)  # device only: 80 ms predicted
    moved = feed(cal, [frame(1, d, device=2.0) for _ in range(10)])
    # The plan's own factor moves at its third frame, the scale at the tenth
    # (which puts the factor back to 1: it was relative to the old scale).
    assert moved == [False, False, True] + [False] * 6 + [True]
    assert cal.planner.device_scale == pytest.approx(2.0)
    assert cal.planner.plan_factor(2, 4) == 1.0
    assert cal.planner.evaluate(2, 4, 1000.0, 1e9).device_ms == pytest.approx(160.0)


def test_the_overhead_is_the_median_residual_over_the_recorded_prediction() -> None:
    cal = Calibrator(small_planner())
    d = published(cal, 7, 1, 3)
    moved = feed(cal, [frame(7, d, extra_ms=25.0) for _ in range(10)])
    assert moved == [False] * 9 + [True]
    assert cal.planner.overhead_ms == pytest.approx(25.0)
    assert cal.planner.device_scale == 1.0
    # A frame of a plan never recorded teaches nothing (nothing to compare it with).
    assert not cal.observe(frame(8, d, extra_ms=500.0), 1000.0)
    assert list(cal.residuals)[-1] == pytest.approx(25.0)


def test_a_frame_that_moves_a_plan_factor_and_the_overhead_asks_for_one_replan() -> None:
    """Before the Calibrator the node re-planned once for the plan factor and
    again for the overhead on such a frame; ``observe`` answers once for both."""
    cal = Calibrator(small_planner())
    d = published(cal, 1, 2, 4)
    frames = [frame(1, d, device=1.0, extra_ms=30.0) for _ in range(5)] + \
        [frame(1, d, device=1.2, extra_ms=30.0) for _ in range(5)]
    moved = feed(cal, frames[:9])
    assert moved == [False] * 9 and cal.planner.plan_factor(2, 4) == 1.0
    assert cal.planner.overhead_ms == 0.0
    assert cal.observe(frames[9], 1000.0) is True
    assert cal.planner.plan_factor(2, 4) == pytest.approx(1.1)
    assert cal.planner.overhead_ms == pytest.approx(34.0)  # median of 30 x5, 46 x4, 38
    assert cal.planner.device_scale == 1.0  # 1.1 is within 15%


def test_transfers_are_compared_with_the_bandwidth_they_ran_at() -> None:
    cal = Calibrator(small_planner())
    d = published(cal, 1, 1, 0, kbps=1000.0)  # the input uploaded at 1000 kbps
    # The bandwidth then halves: frames take bytes / 500 kbps, as the estimate says.
    assert feed(cal, [frame(1, d, kbps=500.0) for _ in range(10)], kbps=500.0) == [False] * 10
    assert cal.planner.transfer_scale == 1.0
    # Transfers that take 1.5x bytes / bandwidth are learnt as such (once they
    # fill the last 20).
    assert feed(cal, [frame(1, d, transfer=1.5) for _ in range(20)])[-1]
    assert cal.planner.transfer_scale == pytest.approx(1.5)


def test_small_uploads_say_nothing_of_the_transfer_scale() -> None:
    cal = Calibrator(small_planner())
    d = published(cal, 1, 1, 2)  # 1000 bytes: under MIN_SAMPLE_BYTES
    assert d.upload_bytes < MIN_SAMPLE_BYTES
    feed(cal, [frame(1, d, transfer=3.0) for _ in range(20)])
    assert not cal.transfer_ratios and cal.planner.transfer_scale == 1.0


def test_the_margin_is_the_spread_at_the_quantile() -> None:
    cal = Calibrator(small_planner(), margin_quantile=0.95)
    d = published(cal, 1, 2, 4)
    # Nine frames as predicted, then one in ten 30% slower (not the median: the
    # overhead stays 0), repeated: the 0.95 quantile sees the slow ones.
    slow = 0.3 * d.total_ms
    frames = [frame(1, d, extra_ms=slow if i % 10 == 9 else 0.0) for i in range(40)]
    feed(cal, frames)
    assert cal.planner.overhead_ms == 0.0
    assert cal.margin == pytest.approx(0.3)
    assert cal.planning_deadline_ms(1300.0) == pytest.approx(1000.0)
    cal.set_margin_quantile(0.5)  # plan on the median: they ran as predicted
    assert cal.margin == 0.0 and cal.planning_deadline_ms(1300.0) == 1300.0


def test_fallback_frames_calibrate_the_exit_they_ran_only() -> None:
    cal = Calibrator(small_planner())
    d = published(cal, 1, 2, 1)  # the plan: layer 0 of exit 2 on the device
    alone = FrameResult(plan_id=1, exit_point=1, partition=3, latency_ms=5000.0,
                        device_ms=45.0, transfer_ms=4900.0, fallback=True)  # waited 4.9 s
    # The first moves the plan's delay (item 6), the third the fallback exit's factor.
    assert feed(cal, [alone] * 3) == [True, False, True]
    assert cal.planner.plan_factor(1, 3) == pytest.approx(1.5)  # 45 ms over 30
    assert cal.planner.plan_factor(*d.key) == 1.0
    # The plan's route: its device part and the 4.9 s it waited (not the
    # 5 s in all, which include finishing the frame on the device).
    assert cal.planner.evaluate_key(d.key, 1000.0, 1e9).total_ms == pytest.approx(
        d.device_ms + 4900.0)
    assert not cal.residuals and not cal.ratios  # nor is it a residual of the figures


def test_skipped_and_unmeasured_frames_are_ignored() -> None:
    cal = Calibrator(small_planner())
    d = published(cal, 1, 2, 4)
    feed(cal, [frame(1, d, device=3.0, skipped=True) for _ in range(10)])
    bad = FrameResult(plan_id=1, exit_point=2, partition=4, latency_ms=math.nan,
                      device_ms=100.0, transfer_ms=0.0)
    feed(cal, [bad] * 10)
    assert not cal.device_ratios and not cal.residuals


def test_switched_off_it_learns_nothing_and_forgets_what_it_learnt() -> None:
    cal = Calibrator(small_planner(), enabled=False)
    d = published(cal, 1, 2, 4)
    assert feed(cal, [frame(1, d, device=2.0, extra_ms=40.0) for _ in range(10)]) == [False] * 10
    assert cal.planner.device_scale == 1.0 and cal.planner.overhead_ms == 0.0
    cal.set_enabled(True)
    # The scale at the tenth frame (what was measured against the old one
    # forgotten), the overhead at the twentieth.
    feed(cal, [frame(1, d, device=2.0, extra_ms=40.0) for _ in range(20)])
    assert cal.planner.device_scale == pytest.approx(2.0)
    assert cal.planner.overhead_ms == pytest.approx(40.0)
    cal.set_enabled(False)
    p = cal.planner
    assert (p.device_scale, p.transfer_scale, p.overhead_ms, cal.margin) == (1.0, 1.0, 0.0, 0.0)
    assert p.plan_factor(2, 4) == 1.0 and not cal.device_ratios


def test_new_planners_keep_or_drop_the_calibration() -> None:
    cal = Calibrator(small_planner())
    d = published(cal, 1, 2, 4)
    feed(cal, [frame(1, d, device=2.0, extra_ms=40.0) for _ in range(20)])
    scale, overhead = cal.planner.device_scale, cal.planner.overhead_ms
    # Another per-message latency: the same device and link, the same scales.
    cal.new_message_latency(small_planner(message_ms=5.0))
    assert cal.planner.message_ms == 5.0
    assert (cal.planner.device_scale, cal.planner.overhead_ms) == (scale, overhead)
    # New profiles: their device calibration starts again.
    cal.new_profiles(small_planner())
    assert cal.planner.device_scale == 1.0 and not cal.device_ratios and cal.margin == 0.0


def test_the_recorded_basis_is_what_the_plan_was_made_with() -> None:
    planner = small_planner(message_ms=2.0)
    planner.set_overhead(10.0)
    planner.set_transfer_scale(1.25)
    cal = Calibrator(planner)
    d = published(cal, 3, 2, 2)
    basis, predicted = cal.plans[3]
    assert predicted == d.total_ms
    assert basis.overhead_ms == 10.0 and basis.device_ms == pytest.approx(40.0)
    assert basis.device_base_ms == 40.0 and basis.transfer_scale == 1.25
    assert basis.upload_ms == pytest.approx(1.25 * BIG * 8 / 1000.0)  # without the 2 ms
    for plan_id in range(4, 4 + RECORDED_PLANS):
        published(cal, plan_id, 2, 2)
    assert len(cal.plans) == RECORDED_PLANS and 3 not in cal.plans


# --- item 6: a remote plan whose frames fall back -----------------------------------------
def fell_back(plan_id: int, d: Decision, latency_ms: float) -> FrameResult:
    """A frame of remote plan ``d`` the device answered alone (finishing the
    exit itself, so reported at p = N) at ``latency_ms``, after waiting for
    the edge in vain."""
    return FrameResult(plan_id=plan_id, exit_point=d.exit_point, partition=d.num_layers,
                       latency_ms=latency_ms, device_ms=d.device_ms,
                       transfer_ms=latency_ms - d.device_ms, fallback=True)


def test_a_remote_plan_whose_frame_fell_back_is_planned_as_slow_as_that_frame() -> None:
    cal = Calibrator(small_planner())
    p = cal.planner
    d = published(cal, 1, 2, 3)  # exit 2, three layers here, the last on the edge
    assert p.plan(1000.0, 100.0).partition == 3  # the best plan at a 100 ms deadline
    base = [p.evaluate(2, k, 1000.0, 100.0).total_ms for k in range(5)]
    assert cal.observe(fell_back(1, d, 104.0), 1000.0)  # it moved: plan again
    assert p.evaluate(2, 3, 1000.0, 100.0).total_ms == pytest.approx(104.0)
    # Every remote plan is that much slower (the link answered late), so
    # Algorithm 1 goes to the device, not to the next partition.
    extra = 104.0 - d.total_ms
    after = [p.evaluate(2, k, 1000.0, 100.0).total_ms for k in range(5)]
    assert after == pytest.approx([b + extra for b in base[:4]] + [base[4]])
    best = p.plan(1000.0, 100.0)
    assert (best.exit_point, best.partition) == (2, 4) and best.feasible
    # The same again moves nothing (no re-plan per frame); a later one does.
    assert not cal.observe(fell_back(1, d, 104.0), 1000.0)
    assert cal.observe(fell_back(1, d, 150.0), 1000.0)
    assert p.evaluate(2, 3, 1000.0, 100.0).total_ms == pytest.approx(150.0)


def test_the_delay_goes_when_the_edge_answers_a_frame() -> None:
    cal = Calibrator(small_planner())
    d = published(cal, 1, 2, 3)
    before = d.total_ms
    cal.observe(fell_back(1, d, 150.0), 1000.0)
    d2 = published(cal, 2, 2, 2)  # a remote plan again (the estimate, say, rose)
    assert cal.observe(frame(2, d2), 1000.0)  # answered by the edge: plan again
    assert cal.planner.evaluate(2, 3, 1000.0, 100.0).total_ms == pytest.approx(before)


def test_the_delay_holds_while_the_estimate_falls_and_goes_when_it_rises() -> None:
    cal = Calibrator(small_planner())
    d = published(cal, 1, 2, 3)
    cal.observe(fell_back(1, d, 150.0), 1000.0)
    # Falling further (an estimate still converging after a step down), or
    # back up a little: the same link. The run that went through partitions
    # 17, 18 and 19 cleared a delay learnt at 76 kbps when the estimate fell
    # to 39 kbps.
    for kbps in (500.0, 200.0, 1200.0, 1500.0):
        assert not cal.bandwidth(kbps)
        assert cal.planner.remote_delay_ms > 0
    assert cal.bandwidth(1600.0)  # a better link: try it
    assert cal.planner.remote_delay_ms == 0.0


def test_device_only_frames_and_frames_faster_than_predicted_learn_no_delay() -> None:
    cal = Calibrator(small_planner())
    alone = published(cal, 1, 2, 4)  # device only: nothing to wait for
    assert not cal.observe(fell_back(1, alone, 500.0), 1000.0)
    # A frame of a remote plan answered alone at once (the edge was taken as
    # down: it never waited, transfer_ms 0) says nothing of the plan's route.
    d = published(cal, 3, 2, 3)
    at_once = FrameResult(plan_id=3, exit_point=2, partition=4, latency_ms=500.0,
                          device_ms=80.0, transfer_ms=0.0, fallback=True)
    cal.observe(at_once, 1000.0)
    assert cal.planner.remote_delay_ms == 0.0
    cal.observe(fell_back(3, d, d.total_ms - 1.0), 1000.0)  # fell back, yet early
    assert cal.planner.remote_delay_ms == 0.0
    with pytest.raises(ValueError):
        cal.planner.set_remote_delay(math.nan)
    with pytest.raises(ValueError):
        cal.planner.set_remote_delay(-1.0)
    # A device-only plan is never delayed.
    cal.planner.set_remote_delay(50.0)
    assert cal.planner.evaluate(2, 4, 1000.0, 1e9).total_ms == pytest.approx(alone.total_ms)


def test_switching_calibration_off_forgets_the_delay() -> None:
    cal = Calibrator(small_planner())
    d = published(cal, 1, 2, 3)
    cal.observe(fell_back(1, d, 150.0), 1000.0)
    cal.set_enabled(False)
    assert cal.planner.remote_delay_ms == 0.0


def test_a_frame_that_waited_briefly_prices_the_route_by_its_wait_not_its_fallback() -> None:
    """A frame of a remote plan that waited 100 ms for the edge, then took
    600 ms on the device: the edge's route is at least its device part and
    100 ms, not 700 ms (seen on the testbed: the first JPEG after device-only
    frames, queued behind a bandwidth probe, priced every remote plan 800 ms
    slower and kept the plan on the device)."""
    cal = Calibrator(small_planner())
    d = published(cal, 1, 2, 3)
    frame = FrameResult(plan_id=1, exit_point=2, partition=4,
                        latency_ms=d.device_ms + 100.0 + 600.0, device_ms=600.0,
                        transfer_ms=100.0, fallback=True)
    assert cal.observe(frame, 1000.0)
    assert cal.planner.evaluate_key(d.key, 1000.0, 1e9).total_ms == pytest.approx(
        d.device_ms + 100.0)


def test_input_frames_coded_on_the_device_do_not_scale_the_layers() -> None:
    """Frames of a plan that sends the input as pixels or a JPEG run no
    layer on the device: their device time (preparing and coding the input)
    over its profiled encoding must not become the layers' scale (on the
    testbed it made every layer 22x slower, and every JPEG too slow)."""
    exits = [ExitCosts(1, 0.8, [10.0, 10.0], [1.0, 1.0], [4000, 2000, 0], 40,
                       codecs=[CodecCost(0, 'pixels', 0.8, 1000, 1.0, 0.5)])]
    cal = Calibrator(Planner(exits))
    d = cal.planner.evaluate(1, 0, 1000.0, 1e9, codec='pixels')
    cal.record(1, d)
    for _ in range(12):
        cal.observe(FrameResult(plan_id=1, exit_point=1, partition=0, latency_ms=40.0,
                                device_ms=22.0, transfer_ms=10.0), 1000.0)
    assert cal.planner.device_scale == 1.0
    # Its own configuration learns it.
    assert cal.planner.plan_factor(1, 0, 'pixels') == pytest.approx(22.0)


def input_planner() -> Planner:
    """Two exits, each able to send its input as pixels or a JPEG at two
    qualities (partition 0: no layer on the device, only the input's coding)."""
    def coded(acc: float) -> list[CodecCost]:
        return [CodecCost(0, 'pixels', acc, 1000, 0.2, 0.5),
                CodecCost(0, 'jpeg90', acc, 600, 1.0, 0.5),
                CodecCost(0, 'jpeg50', acc, 400, 1.0, 0.5)]
    return Planner([
        ExitCosts(1, 0.7, [10.0, 10.0], [1.0, 1.0], [4000, 2000, 0], 40, codecs=coded(0.7)),
        ExitCosts(2, 0.8, [10.0, 10.0, 10.0], [1.0, 1.0, 1.0], [4000, 2000, 2000, 0], 40,
                  codecs=coded(0.8))])


def test_an_input_codec_learnt_at_one_exit_is_learnt_at_every_exit() -> None:
    """At partition 0 the device runs no layer: the same coding of the same
    input costs the same whichever exit the edge runs. On the testbed the
    planner learnt that a JPEG 90 of exit 4 took 15x its profile, then chose
    exit 5 from a JPEG 50 at its profile (predicted 32 ms, measured 76) and
    missed frames; a JPEG of another quality, never run, is coded by the
    same encoder and is learnt with it. Pixels (a copy) is not a JPEG: it
    keeps its own profile."""
    cal = Calibrator(input_planner())
    d = cal.planner.evaluate(1, 0, 1000.0, 1e9, codec='jpeg90')
    cal.record(1, d)
    for _ in range(3):
        cal.observe(FrameResult(plan_id=1, exit_point=1, partition=0, latency_ms=30.0,
                                device_ms=15.0, transfer_ms=5.0), 1000.0)
    p = cal.planner
    assert p.plan_factor(1, 0, 'jpeg90') == pytest.approx(15.0)
    assert p.plan_factor(2, 0, 'jpeg90') == pytest.approx(15.0)
    assert p.plan_factor(2, 0, 'jpeg50') == pytest.approx(15.0)
    assert p.plan_factor(1, 0, 'jpeg50') == pytest.approx(15.0)
    assert p.plan_factor(2, 0, 'pixels') == 1.0
    assert p.plan_factor(2, 1) == 1.0  # layers are not input coding
    # A quality with frames of its own keeps what they measured.
    d50 = p.evaluate(2, 0, 1000.0, 1e9, codec='jpeg50')
    cal.record(2, d50)
    for _ in range(3):
        cal.observe(FrameResult(plan_id=2, exit_point=2, partition=0, latency_ms=20.0,
                                device_ms=10.0 * d50.device_ms / 15.0, transfer_ms=5.0),
                    1000.0)
    assert p.plan_factor(1, 0, 'jpeg50') == pytest.approx(10.0)
    assert p.plan_factor(1, 0, 'jpeg90') == pytest.approx(15.0)
    for _ in range(3):  # more JPEG 90 frames do not overwrite JPEG 50's own
        cal.observe(FrameResult(plan_id=1, exit_point=1, partition=0, latency_ms=30.0,
                                device_ms=15.0, transfer_ms=5.0), 1000.0)
    assert p.plan_factor(2, 0, 'jpeg50') == pytest.approx(10.0)


def jpeg_planner() -> Planner:
    """The default model's shape at partition 0: a 1162-byte JPEG to the edge
    (53 ms to code on the device) or the whole exit on the device (620 ms)."""
    return Planner([ExitCosts(4, 0.97, [620.0], [2.0], [12288, 0], 40,
                              codecs=[CodecCost(0, 'jpeg90', 0.97, 1162, 53.0, 0.5)])])


def test_a_wait_the_estimate_explains_only_while_it_is_low_is_learnt_when_it_rises() -> None:
    """Measured on the testbed at 50 kbit/s (fig67, 2026-12-05): a JPEG plan
    made at 30 kbps (what a probe found left by DDS discovery) waited 874 ms
    for the edge in vain. The frame's own wait had pulled the estimate down
    to a 10 kbps bound, which explains 874 ms, so no delay was learnt; the
    next probe's 30 kbps made the JPEG look fine again, and the level went
    on flipping (73% of frames met; device only meets them all). When the
    estimate rises back, the wait it no longer explains is the delay; it
    goes once the link beats the one the failed plan assumed, or a remote
    frame comes back."""
    cal = Calibrator(jpeg_planner())
    d = cal.planner.evaluate(4, 0, 30.0, 1e9, codec='jpeg90')
    cal.record(1, d)
    assert d.total_ms < 747.0  # planned: it meets the deadline with the margin
    wait = FrameResult(plan_id=1, exit_point=4, partition=1, latency_ms=900.0, device_ms=53.0,
                       transfer_ms=874.0, fallback=True)
    cal.observe(wait, 10.0)  # at the bound the wait pulled the estimate down to
    assert cal.planner.remote_delay_ms == 0.0  # explained, for now
    assert cal.bandwidth(30.0)  # the probe: 874 ms is no longer explained
    again = cal.planner.evaluate(4, 0, 30.0, 1e9, codec='jpeg90')
    assert again.total_ms > 747.0  # the JPEG no longer looks fine: device only
    assert cal.planner.plan(30.0, 747.0).partition == 1
    assert not cal.bandwidth(40.0)  # 40 is not 1.5 x the plan's 30
    assert cal.planner.remote_delay_ms > 0
    assert cal.bandwidth(50.0)  # a better link than the plan assumed: try it
    assert cal.planner.remote_delay_ms == 0.0


def test_a_frame_answered_as_late_after_waiting_for_the_edge_still_teaches_the_delay() -> None:
    """On the testbed at 50 kbit/s the JPEG frames that waited for the edge
    in vain were answered at once as late (no exit had time left, frames
    were waiting): reported skipped, with their wait. Skipped frames teach
    nothing else, but this one's wait is the delay's evidence: all 8 of the
    level's misses were such frames, and no delay was ever learnt."""
    cal = Calibrator(jpeg_planner())
    d = cal.planner.evaluate(4, 0, 30.0, 1e9, codec='jpeg90')
    cal.record(1, d)
    late = FrameResult(plan_id=1, exit_point=0, partition=0, latency_ms=950.0, device_ms=53.0,
                       transfer_ms=874.0, fallback=True, skipped=True)
    assert cal.observe(late, 30.0)
    assert cal.planner.remote_delay_ms > 0
    assert cal.planner.plan(30.0, 747.0).partition == 1  # device only, then
    # A skipped frame that never waited teaches nothing.
    cal2 = Calibrator(jpeg_planner())
    cal2.record(1, d)
    assert not cal2.observe(FrameResult(plan_id=1, exit_point=0, partition=0, latency_ms=1200.0,
                                        device_ms=0.0, transfer_ms=0.0, fallback=True,
                                        skipped=True), 30.0)


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_a_delay_learnt_when_the_link_dropped_goes_when_it_comes_back() -> None:
    """The demo's trace, 10 Mbit/s then 300 kbit/s then back: the first
    frame after the drop fell back under a plan made at 10 Mbit/s; the delay
    it taught was held until the estimate rose above 1.5 times that, which a
    link back at 10 Mbit/s never does, so the device never used the edge
    again. Held DELAY_HOLD_S, remote plans are tried again."""
    clock = FakeClock()
    cal = Calibrator(small_planner(), clock=clock)
    d = published(cal, 1, 2, 3)  # planned at 1000 kbps
    assert cal.observe(fell_back(1, d, 150.0), 1000.0)
    for kbps in (300.0, 320.0, 1000.0):  # the drop, then back to the rate it failed at
        clock.t += 1.0
        assert not cal.bandwidth(kbps)
        assert cal.planner.remote_delay_ms > 0
    clock.t += DELAY_HOLD_S
    assert cal.bandwidth(1000.0)  # held long enough: try the edge again
    assert cal.planner.remote_delay_ms == 0.0


def test_a_delay_that_fails_again_at_once_is_held_twice_as_long() -> None:
    """A link that stays bad costs one late frame per retry, and retries
    grow apart up to DELAY_HOLD_MAX_S; a frame back from the edge resets them."""
    clock = FakeClock()
    cal = Calibrator(small_planner(), clock=clock)
    holds = []
    for plan_id in range(1, 8):
        d = published(cal, plan_id, 2, 3)
        clock.t += 100.0  # the retry's plan is chosen late (a quiet link), and fails
        cal.observe(fell_back(plan_id, d, 150.0), 1000.0)  # fails again
        start = clock.t
        for _ in range(2000):  # 2000 s at most
            if cal.bandwidth(1000.0):
                break
            clock.t += 1.0
        holds.append(clock.t - start)
    assert holds[0] == pytest.approx(DELAY_HOLD_S)
    assert holds[1] == pytest.approx(2 * DELAY_HOLD_S)
    assert max(holds) == pytest.approx(DELAY_HOLD_MAX_S)
    d = published(cal, 20, 2, 3)
    cal.observe(fell_back(20, d, 150.0), 1000.0)
    d2 = published(cal, 21, 2, 2)
    assert cal.observe(frame(21, d2), 1000.0)  # the edge answered: delay gone, hold reset
    assert cal.delay_hold_s == DELAY_HOLD_S


def test_a_delay_goes_when_the_estimate_falls_far_enough_to_explain_the_failure() -> None:
    """The link down (the estimate falls below a tenth of what the failed
    plan assumed: the drop explains the failure, and the estimate now prices
    remote plans by itself): the delay goes at once, so when the link is back
    the edge is used again as soon as the estimate says so (on Jazzy the
    demo's device stayed on the device 9 s after the link came back, and the
    fault bench took 14 s). A fall of a third (a failed frame's wait pulling
    the estimate to a bound: 30 to 10 kbps on the testbed) is the same link:
    the delay holds."""
    clock = FakeClock()
    cal = Calibrator(small_planner(), clock=clock)
    d = published(cal, 1, 2, 3)  # planned at 1000 kbps
    cal.observe(fell_back(1, d, 150.0), 1000.0)
    assert not cal.bandwidth(400.0)
    assert cal.planner.remote_delay_ms > 0
    assert cal.bandwidth(2.0)  # down: the estimate explains it
    assert cal.planner.remote_delay_ms == 0.0
    # A failed frame kept without a delay (its wait explained by the estimate
    # then) is forgotten by such a drop too: else the link back at the failed
    # plan's rate made its wait the delay, held until 1.5 times that rate
    # (the demo on Jazzy stayed on the device after the link was back).
    d = published(cal, 2, 2, 3)  # planned at 1000 kbps
    cal.observe(fell_back(2, d, d.total_ms + 3.0), 5.0)  # explained at 5 kbps: no delay
    assert cal.planner.remote_delay_ms == 0.0 and cal.failed is not None
    cal.bandwidth(4.0)
    assert cal.failed is None
    assert not cal.bandwidth(1000.0)
    assert cal.planner.remote_delay_ms == 0.0

    bound = Calibrator(small_planner(), clock=clock)
    d = published(bound, 1, 2, 3)
    bound.observe(fell_back(1, d, 150.0), 1000.0)
    for kbps in (340.0, 900.0, 1000.0, 1400.0):
        assert not bound.bandwidth(kbps)
        assert bound.planner.remote_delay_ms > 0

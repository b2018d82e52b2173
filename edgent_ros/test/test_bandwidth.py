"""Bandwidth estimation from the device's transfer reports (pure logic, a fake clock)."""

from __future__ import annotations

import itertools

import pytest

from edgent_ros import bandwidth as bw


def report(estimator: bw.BandwidthEstimator, held: dict[float, float], now: float,
           sent: float, nbytes: int, *, still_out: bool, given_up: bool,
           edge_ms: float = 0.0, expected_ms: float = 200.0) -> float | None:
    """What the monitor node does with one report: transfer_report_kbps decides,
    the estimator takes a new sample or revises the transfer's own."""
    kbps = bw.transfer_report_kbps(
        nbytes, (now - sent) * 1e3, edge_ms, still_out=still_out, given_up=given_up,
        expected_ms=expected_ms, held=sent in held,
        estimate_kbps=estimator.estimate(peek=True).kbps)
    if kbps is None:
        return None
    if sent in held:
        estimator.revise(held[sent], kbps, bound=still_out, mixed=not still_out)
    else:
        held[sent] = now
        estimator.add(kbps, bw.SOURCE_PASSIVE, now, bound=still_out)
    return kbps


def test_small_frames_that_never_land_in_time_bound_the_link() -> None:
    """Measured on the testbed at 50 kbit/s (fig67, JPEG input): the link's
    queue held seconds of DDS discovery traffic, and 1.1 KB frames came back
    after 3.8 and 5.0 s, each given up on after 0.8 s. Being under
    min_sample_bytes they said nothing of the link, and the estimate (45 kbps,
    from probes) kept predicting that such a frame lands in 0.2 s."""
    est = bw.BandwidthEstimator(window=8)
    for i in range(4):
        est.add(45.0, bw.SOURCE_PROBE, float(i))
    held: dict[float, float] = {}
    # Out 0.5 s: not given up yet: latency's scatter, nothing.
    assert report(est, held, 10.5, 10.0, 1147, still_out=True, given_up=False) is None
    assert est.estimate().kbps == pytest.approx(45.0)
    # Given up on at 0.8 s: the link carried at most 11.5 kbps for it, far
    # below the regime: a new one starts from the bound.
    bound = report(est, held, 10.8, 10.0, 1147, still_out=True, given_up=True)
    assert bound == pytest.approx(1147 * 8 / 800.0)
    e = est.estimate()
    assert e.kbps == pytest.approx(bound) and e.capped and e.change
    # Still out at 3 s: a tighter bound revises it.
    report(est, held, 13.0, 10.0, 1147, still_out=True, given_up=True)
    assert est.estimate().kbps == pytest.approx(1147 * 8 / 3000.0)
    # It landed at 3.81 s: what frames of its size get now (latency and all)
    # stands until a clean sample...
    report(est, held, 13.81, 10.0, 1147, still_out=False, given_up=True, edge_ms=3.0)
    e = est.estimate()
    assert e.kbps == pytest.approx(1147 * 8 / 3807.0) and not e.capped
    # ...a probe's, which replaces it.
    est.add(48.0, bw.SOURCE_PROBE, 20.0)
    assert est.estimate().kbps == pytest.approx(48.0)


def test_small_transfers_still_never_measure_the_rate_alone() -> None:
    # Landed, never bounded: latency, not rate.
    assert bw.transfer_report_kbps(1147, 300.0, 3.0, still_out=False, given_up=False,
                                   expected_ms=200.0, held=False, estimate_kbps=45.0) is None
    # Out three times its expected time but not given up on: nothing yet.
    assert bw.transfer_report_kbps(1147, 700.0, 0.0, still_out=True, given_up=False,
                                   expected_ms=200.0, held=False, estimate_kbps=45.0) is None
    # Given up on, but its bound is above the estimate: nothing new.
    assert bw.transfer_report_kbps(1147, 100.0, 0.0, still_out=True, given_up=True,
                                   expected_ms=20.0, held=False, estimate_kbps=45.0) is None


def test_a_collapsed_estimate_is_probed_again_within_the_longest_interval() -> None:
    """Measured on the testbed (fig67, default model): after the 100 kbit/s
    level the estimate stood at 0.8 kbit/s; at 200 kbit/s the plan stayed
    device only, so only probes could measure the link, and at that
    estimate the duty rule spaced them 4096 * 8 / 0.8 / 0.6 = 68 s apart.
    The estimate was still 46 kbit/s 30 s later. A link nothing else
    measures is probed at least every MAX_INTERVAL_S."""
    s = bw.ProbeScheduler(max_rate_hz=5.0, idle_s=0.25, duty=0.6, probe_bytes=8192)
    assert s.probe_now(0.0, 0.8) == 8192  # the first probe goes at once
    s.landed(3.0, 0.8, 8192)  # (lost after the monitor's timeout)
    sent = [t for t in range(1, 61) if s.probe_now(float(t), 0.8)]
    assert sent and sent[0] <= bw.ProbeScheduler.MAX_INTERVAL_S
    assert all(b - a >= bw.ProbeScheduler.MAX_INTERVAL_S for a, b in itertools.pairwise(sent))
    # A good estimate keeps the duty rule and full probes.
    fast = bw.ProbeScheduler(max_rate_hz=5.0, idle_s=0.25, duty=0.6, probe_bytes=8192)
    assert fast.probe_now(0.0, 1000.0) == 8192
    assert fast.interval_s(1000.0) == pytest.approx(0.2)

"""Algorithm 1 (device first), the plan table, hysteresis, and bandwidth estimation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgent_ros import bandwidth as bw
from edgent_ros import codec_names as cn
from edgent_ros import latency as lat
from edgent_ros import model as m
from edgent_ros.latency import CodecCost
from edgent_ros.planner import MODES, ExitCosts, Planner, PlanTable, should_switch


@st.composite
def random_exits(draw: st.DrawFn, codecs: bool = True) -> list[ExitCosts]:
    count = draw(st.integers(1, 6))
    exits = []
    for e in range(1, count + 1):
        n = draw(st.integers(1, 25))
        ms = st.floats(0.0, 500.0, allow_nan=False)
        accuracy = draw(st.floats(0.05, 1.0))
        coded = []
        for p in range(n):
            names = cn.INPUT_CODECS if p == 0 else cn.ACTIVATION_CODECS
            for codec in draw(st.lists(st.sampled_from(names[1:]), unique=True,
                                       max_size=len(names) - 1)) if codecs else []:
                coded.append(CodecCost(
                    p, codec, accuracy if codec in cn.LOSSLESS else
                    draw(st.sampled_from([accuracy, accuracy - 0.01, accuracy * 0.5])),
                    draw(st.integers(1, 10**6)), draw(st.floats(0.0, 50.0)),
                    draw(st.floats(0.0, 50.0))))
        exits.append(ExitCosts(
            exit_point=e, accuracy=accuracy,
            device_layers_ms=draw(st.lists(ms, min_size=n, max_size=n)),
            edge_layers_ms=draw(st.lists(ms, min_size=n, max_size=n)),
            upload_bytes=[*draw(st.lists(st.integers(1, 10**6), min_size=n, max_size=n)), 0],
            result_bytes=draw(st.integers(0, 4096)), codecs=coded))
    return exits


def every_configuration(exits: list[ExitCosts], bw_kbps: float,
                        message_ms: float) -> list[tuple[float, float, int, int, str]]:
    """(accuracy, ms, exit, partition, codec) of every configuration, by the formula."""
    out = []
    for e in exits:
        n = len(e.device_layers_ms)
        rows = [(p, cn.RAW if p < n else cn.NONE, e.accuracy, e.upload_bytes[p], 0.0, 0.0)
                for p in range(n + 1)]
        rows += [(c.partition, c.codec, c.accuracy, c.upload_bytes, c.encode_ms, c.decode_ms)
                 for c in e.codecs]
        for p, codec, acc, nbytes, enc, dec in rows:
            t = (sum(e.device_layers_ms[:p]) + enc + nbytes * 8 / bw_kbps + dec
                 + sum(e.edge_layers_ms[p:])
                 + (e.result_bytes * 8 / bw_kbps + message_ms if p < n else 0.0))
            out.append((acc, t, e.exit_point, p, codec))
    return out


def brute_force(exits: list[ExitCosts], bw_kbps: float, deadline: float,
                message_ms: float) -> tuple[float, float, bool]:
    """Algorithm 1 by enumeration of every (exit, partition, codec): the most
    accurate configuration that meets the deadline, ties to the faster; else
    the fastest. Returns its accuracy, its ms and whether it meets."""
    every = every_configuration(exits, bw_kbps, message_ms)
    ok = [c for c in every if c[1] <= deadline]
    if ok:
        top = max(c[0] for c in ok)
        best = min((c for c in ok if c[0] >= top - 1e-9), key=lambda c: c[1])
        return best[0], best[1], True
    fastest = min(every, key=lambda c: c[1])
    return fastest[0], fastest[1], False


@settings(max_examples=300, deadline=None)
@given(exits=random_exits(), bw_kbps=st.floats(1.0, 1e5), deadline=st.floats(1.0, 5000.0),
       message_ms=st.floats(0.0, 20.0))
def test_plan_agrees_with_brute_force(exits: list[ExitCosts], bw_kbps: float, deadline: float,
                                      message_ms: float) -> None:
    planner = Planner(exits, message_ms=message_ms)
    decision = planner.plan(bw_kbps, deadline)
    accuracy, total, feasible = brute_force(exits, bw_kbps, deadline, message_ms)
    assert decision.feasible == feasible
    assert decision.total_ms == pytest.approx(total, rel=1e-9, abs=1e-9)
    if feasible:
        assert decision.accuracy == pytest.approx(accuracy, abs=1e-9)
    # The decision is the configuration it names.
    assert planner.evaluate_key(decision.key, bw_kbps, deadline).total_ms == pytest.approx(
        decision.total_ms, rel=1e-12)
    parts = decision.device_ms + decision.upload_ms + decision.edge_ms + decision.download_ms
    assert parts == pytest.approx(decision.total_ms, rel=1e-9, abs=1e-9)
    # Every configuration, not only the winner, costs what the formula says.
    every = every_configuration(exits, bw_kbps, message_ms)
    got = dict(zip(planner.configurations, planner.latencies(bw_kbps), strict=True))
    assert sorted(got) == sorted((e, p, c) for _, _, e, p, c in every)
    for _, t, e, p, c in every:
        assert got[(e, p, c)] == pytest.approx(t, rel=1e-9, abs=1e-9)


@pytest.fixture(scope='module')
def paper_planner() -> Planner:
    card = m.load_card(m.resolve_model_path(m.DEFAULT_MODEL))
    device = lat.load_profile(lat.resolve_profile_path('paper_pi3_device'))
    edge = lat.load_profile(lat.resolve_profile_path('paper_desktop_edge'))
    return Planner.from_latency(lat.SubModelLatency(card, device, edge))


def test_table_two_higher_bandwidth_never_lowers_the_exit(paper_planner: Planner) -> None:
    chosen = [paper_planner.plan(b, 1000.0) for b in np.linspace(50, 1500, 59)]
    assert all(d.feasible for d in chosen)
    accuracy = [d.accuracy for d in chosen]
    assert accuracy == sorted(accuracy)


def test_table_two_looser_deadline_never_lowers_the_exit(paper_planner: Planner) -> None:
    chosen = [paper_planner.plan(500.0, t) for t in np.linspace(100, 1000, 37)]
    accuracy = [d.accuracy for d in chosen if d.feasible]
    assert accuracy == sorted(accuracy) and accuracy
    assert not chosen[0].feasible


def test_table_two_nothing_meets_100_ms(paper_planner: Planner) -> None:
    for b in (50.0, 400.0, 500.0):
        d = paper_planner.plan(b, 100.0)
        assert not d.feasible
        fastest = min(paper_planner.latencies(b))
        assert d.total_ms == pytest.approx(fastest)  # best effort: the fastest plan


def test_plan_table_matches_the_planner(paper_planner: Planner) -> None:
    table = PlanTable(paper_planner, 600.0, low_kbps=10, high_kbps=5000)
    for level in table.levels[::17]:
        assert table.lookup(float(level)).key == paper_planner.plan(float(level), 600.0).key
    assert table.lookup(1.0).key == table.decisions[0].key


def test_bad_inputs_are_refused(paper_planner: Planner) -> None:
    for bad in (0.0, -5.0, float('nan')):
        with pytest.raises(ValueError, match='bandwidth must be > 0'):
            paper_planner.plan(bad, 100.0)
        with pytest.raises(ValueError, match='deadline must be > 0'):
            paper_planner.plan(100.0, bad)
    with pytest.raises(ValueError, match='partition 99'):
        paper_planner.evaluate(1, 99, 100.0, 100.0)


def two_exit_planner() -> Planner:
    # Exit 2 (better) needs ~1000 kbps to meet 100 ms edge-only; exit 1 always fits.
    return Planner([
        ExitCosts(1, 0.80, [5.0], [1.0], [10_000, 0], 40),
        ExitCosts(2, 0.95, [500.0, 500.0], [10.0, 10.0], [9_960, 1000, 0], 40),
    ])


def test_hysteresis_stops_flapping_on_noise() -> None:
    planner = two_exit_planner()
    rng = np.random.default_rng(0)
    noisy = 1000.0 * rng.normal(1.0, 0.03, size=300)
    switches = {}
    for h in (0.0, 0.1):
        current, count = None, 0
        for b in noisy:
            candidate = planner.plan(float(b), 100.0)
            if should_switch(planner, current, candidate, h):
                current, count = candidate, count + 1
        switches[h] = count
    assert switches[0.0] > 20
    assert switches[0.1] <= 2
    # A real step still switches both ways.
    current = planner.plan(2000.0, 100.0)
    assert current.exit_point == 2
    down = planner.plan(300.0, 100.0)
    assert should_switch(planner, current, down, 0.1) and down.exit_point == 1
    assert should_switch(planner, down, planner.plan(2000.0, 100.0), 0.1)


def test_transfer_samples() -> None:
    assert bw.transfer_sample(12_500, 110.0, 10.0) == pytest.approx(1000.0)
    assert bw.transfer_sample(1000, 50.0, 1.0) is None        # too small to measure
    assert bw.transfer_sample(12_500, 10.0, 10.2) is None     # no transfer time left


def test_estimator_harmonic_mean_and_confidence() -> None:
    est = bw.BandwidthEstimator(window=4)
    assert est.estimate() is None
    for i, k in enumerate((1000.0, 1100.0, 900.0, 1000.0)):
        est.add(k, bw.SOURCE_PROBE, float(i))
    e = est.estimate()
    assert e.kbps == pytest.approx(4 / (1 / 1000 + 1 / 1100 + 1 / 900 + 1 / 1000))
    assert e.source == bw.SOURCE_PROBE and e.samples == 4 and 0.6 < e.confidence < 1
    est.add(950.0, bw.SOURCE_PASSIVE, 5.0)
    assert est.estimate().source == bw.SOURCE_MIXED
    est.expire(100.0)
    assert est.estimate() is None
    with pytest.raises(ValueError):
        est.add(float('nan'), bw.SOURCE_PROBE, 0.0)


def test_change_detection_follows_steps_and_ignores_noise() -> None:
    rng = np.random.default_rng(1)
    est = bw.BandwidthEstimator(window=8)
    t = 0.0
    for _ in range(300):  # +-15% noise around 500 kbps: no regime change
        t += 1
        est.add(500.0 * rng.normal(1.0, 0.15), bw.SOURCE_PROBE, t)
    assert est.changes <= 1
    assert est.estimate().kbps == pytest.approx(500.0, rel=0.1)
    before = est.changes
    needed = None
    for i in range(1, 20):  # a step down to 100 kbps
        t += 1
        est.add(100.0 * rng.normal(1.0, 0.1), bw.SOURCE_PROBE, t)
        if needed is None and est.changes > before:
            needed = i
    assert needed is not None and needed <= 3
    assert est.estimate().kbps == pytest.approx(100.0, rel=0.15)


def test_probe_scheduler_bounds_the_rate_and_waits_for_idle() -> None:
    s = bw.ProbeScheduler(max_rate_hz=2.0, idle_s=1.0)
    due = [t for t in np.arange(0.0, 10.0, 0.05) if s.probe_now(float(t))]
    assert len(due) == pytest.approx(20, abs=1)
    s.passive(20.0)
    assert not s.probe_now(20.5)
    assert s.probe_now(21.1)


def test_edgent_is_at_least_as_accurate_as_every_baseline(paper_planner: Planner) -> None:
    from edgent_ros.planner import MODES

    for deadline in np.linspace(100, 1000, 19):
        def within(mode: str, deadline: float = float(deadline)) -> float:
            d = paper_planner.plan_mode(mode, 400.0, deadline)
            return d.accuracy if d.feasible else 0.0
        edgent = within('edgent')
        for mode in MODES[1:]:
            assert edgent >= within(mode), (deadline, mode)
    best = max(e.accuracy for e in paper_planner.exits)
    assert paper_planner.plan_mode('device_only', 400.0, 1000.0).device_only
    assert paper_planner.plan_mode('edge_only', 400.0, 1000.0).partition == 0
    assert paper_planner.plan_mode('partition_only', 400.0, 1000.0).accuracy == best
    with pytest.raises(ValueError, match='unknown planner mode'):
        paper_planner.plan_mode('cloud', 400.0, 1000.0)


def test_per_frame_overhead_is_paid_by_every_plan(paper_planner: Planner) -> None:
    base = paper_planner.plan(500.0, 400.0)
    paper_planner.set_overhead(50.0)
    try:
        with_overhead = paper_planner.plan(500.0, 400.0)
        assert with_overhead.total_ms == pytest.approx(
            paper_planner.evaluate_key(with_overhead.key, 500.0, 400.0).total_ms)
        # The same as planning without it against a deadline 50 ms shorter.
        paper_planner.set_overhead(0.0)
        shorter = paper_planner.plan(500.0, 350.0)
        assert with_overhead.key == shorter.key
        assert with_overhead.total_ms == pytest.approx(shorter.total_ms + 50.0)
        assert with_overhead.device_ms == pytest.approx(shorter.device_ms + 50.0)
    finally:
        paper_planner.set_overhead(0.0)
    assert paper_planner.plan(500.0, 400.0) == base
    with pytest.raises(ValueError, match='overhead'):
        paper_planner.set_overhead(-1.0)


def test_probe_interval_keeps_the_probes_share_of_the_link_under_the_duty() -> None:
    s = bw.ProbeScheduler(max_rate_hz=5.0, idle_s=0.0, duty=0.5, probe_bytes=8192)
    assert s.interval_s(None) == pytest.approx(0.2)  # unknown link: the rate cap
    assert s.interval_s(10_000.0) == pytest.approx(0.2)  # a fast link: the rate cap
    # 8 KB at 100 kbps takes 0.655 s: the next probe waits twice that.
    assert s.interval_s(100.0) == pytest.approx(2 * 8192 * 8 / 100 / 1000)
    due = [t for t in np.arange(0.0, 10.0, 0.01) if s.probe_now(float(t), 100.0)]
    assert len(due) == 8
    with pytest.raises(ValueError, match='duty'):
        bw.ProbeScheduler(duty=0.0)


def test_an_echo_that_appears_is_probed_at_once() -> None:
    # The link measured at 10 kbit/s (the edge was dead): the next 8 KB probe
    # waits MAX_INTERVAL_S (the duty rule alone: 8192 * 8 / 10 / duty = 13 s).
    # A restarted edge's echo matching must not wait for that (issue 15, item 6).
    s = bw.ProbeScheduler(max_rate_hz=5.0, idle_s=0.25, duty=0.5, probe_bytes=8192)
    assert s.probe_now(0.0, 10.0) == 8192
    assert s.probe_now(3.0, 10.0) == 0
    s.passive(3.1)  # and a report of a frame sent to the dead edge just came
    s.edge_appeared()
    assert s.probe_now(3.2, 10.0) == 8192
    assert s.probe_now(3.3, 10.0) == 0  # once; then the usual pace


def test_probes_keep_clear_of_the_next_frame() -> None:
    s = bw.ProbeScheduler(max_rate_hz=5.0, idle_s=0.5, duty=0.5, probe_bytes=8192)
    # Frames leave every second and land 0.2 s later.
    for k in range(4):
        s.passive(k + 0.2, sent_s=float(k))
        s.passive(k + 0.2, sent_s=float(k))  # a second sample of one transfer: one send
    assert list(s.frame_sends) == [0.0, 1.0, 2.0, 3.0]
    assert s.next_frame_s(3.5) == pytest.approx(4.0)
    # At 500 kbps a probe takes 131 ms: at 3.75 s it lands (with half again to
    # spare) before the frame at 4 s; at 3.85 s only a smaller one does (6250
    # bytes, 100 ms); at 3.95 s not even the smallest that measures anything.
    assert s.probe_now(3.75, 500.0) == 8192
    s.last_probe_s = -math.inf
    assert s.probe_now(3.85, 500.0) == pytest.approx(6250, abs=1)
    # The next waits twice the smaller probe's time (the duty), not the full one's.
    assert s.interval_s(500.0) == pytest.approx(2 * 6250 * 8 / 500 / 1000, rel=1e-3)
    s.last_probe_s = -math.inf
    assert s.probe_now(3.95, 500.0) == 0
    # Small frames (too small to measure the rate) tell the pace, without
    # holding probes back as measured transfers do (idle_s).
    s.passive(4.05, sent_s=4.0, measured=False)
    assert s.last_passive_s == pytest.approx(3.2) and s.frame_sends[-1] == 4.0
    # Frames stopped (a device-only plan): probes go whenever idle and due.
    assert s.next_frame_s(10.0) is None and s.probe_now(10.0, 500.0)


def test_a_stale_estimate_still_gets_a_probe_between_small_frames() -> None:
    s = bw.ProbeScheduler(max_rate_hz=5.0, idle_s=0.25, duty=0.6, probe_bytes=8192,
                          stale_s=2.0)
    # Small frames (nothing measured) leave every second; at an estimate of
    # 49 kbps not even 4 KB lands 1.5x before the next one.
    for k in range(4):
        s.passive(k + 0.05, sent_s=float(k), measured=False)
    s.landed(1.3, 49.0, now_s=0.5)  # the last probe measured the rate at 0.5 s
    assert s.probe_now(3.5, 49.0) == 0  # measured 3 s ago, but late in the gap
    s.passive(4.05, sent_s=4.0, measured=False)
    assert s.probe_now(4.1, 49.0) == 4096  # stale: the smallest goes, early in the gap
    s.landed(0.4, 49.0, nbytes=4096, now_s=4.5)
    s.passive(5.05, sent_s=5.0, measured=False)
    s.last_probe_s = -math.inf
    assert s.probe_now(5.1, 49.0) == 0  # measured 0.6 s ago: not stale


def test_a_probe_much_faster_than_expected_is_followed_at_once() -> None:
    s = bw.ProbeScheduler(max_rate_hz=5.0, idle_s=0.0, duty=0.5, probe_bytes=8192)
    assert s.probe_now(10.0, 80.0)  # at 80 kbps a probe takes 0.82 s: the next in 1.64 s
    s.landed(0.80, 80.0)  # as expected
    assert not s.probe_now(11.0, 80.0)
    s.landed(0.70, 80.0)  # 15% early: the scatter of a steady link
    assert not s.probe_now(11.0, 80.0)
    # The link got faster three quarters into the probe (0.6 s at 80 kbps, then
    # the rest at 1000): it landed 0.62 s after it left. Measure it again now.
    s.landed(0.62, 80.0)
    assert s.probe_now(11.0, 80.0)
    # A smaller probe is expected sooner: 0.40 s is on time for 4 KB at 80 kbps
    # (it would be early for 8 KB).
    s.landed(0.40, 80.0, nbytes=4096)
    assert not s.probe_now(11.1, 80.0)


def test_a_probe_followed_at_once_still_leaves_the_link_its_share() -> None:
    # On the testbed at 100 kbit/s with an estimate of 40 kbps, each probe
    # queued behind the last landed sooner than 40 kbps predicts, was followed
    # at once, and nothing but probes crossed the link (a backlog of 15-30 KB
    # for 40 s). Followed at once now means: after duty's share of its time.
    s = bw.ProbeScheduler(max_rate_hz=5.0, idle_s=0.0, duty=0.6, probe_bytes=8192)
    assert s.probe_now(10.0, 40.0) == 8192  # 1.64 s expected at 40 kbps
    s.landed(0.65, 40.0, now_s=10.65)  # much sooner: measure again, but...
    assert not s.probe_now(10.8, 40.0)  # ...0.65 s x 0.4 / 0.6 = 0.43 s later
    assert s.probe_now(11.1, 40.0)
    s.landed(2.0, 40.0, overdue=True, now_s=13.1)  # overdue: the same rule
    assert not s.probe_now(13.5, 40.0)
    assert s.probe_now(14.5, 40.0)


def test_an_overdue_transfer_bounds_the_bandwidth_until_it_lands() -> None:
    assert bw.overdue_bound(8192, 50.0, 33.0) is None  # not overdue yet
    assert bw.overdue_bound(8192, 99.0, 33.0) is None  # under 3x expected
    bound = bw.overdue_bound(8192, 200.0, 33.0)
    assert bound == pytest.approx(8192 * 8 / 200.0)
    est = bw.BandwidthEstimator(window=4)
    for i in range(4):
        est.add(2000.0, bw.SOURCE_PROBE, float(i))
    assert est.add(bound, bw.SOURCE_PROBE, 10.0)  # a 6x drop: a new regime at once
    assert est.estimate(peek=True).kbps == pytest.approx(bound)
    assert est.estimate(peek=True).change and est.estimate().change  # peek keeps the flag
    assert not est.estimate().change
    assert est.revise(10.0, 300.0)  # the probe landed: its real rate replaces the bound
    assert est.estimate().kbps == pytest.approx(300.0)
    assert not est.revise(99.0, 5.0)
    est.add(310.0, bw.SOURCE_PASSIVE, 11.0)
    assert est.discard(11.0)  # a sample spoilt by a probe on the link at the same time
    assert est.estimate().samples == 1 and not est.discard(11.0)


def test_a_bound_that_keeps_falling_starts_a_new_regime() -> None:
    est = bw.BandwidthEstimator(window=8)
    for i in range(8):
        est.add(2000.0, bw.SOURCE_PASSIVE, float(i))
    # A 12 KB frame given up on after 118 ms: at most 833 kbps. Alone that is
    # not enough for the CUSUM; the estimate merely sags.
    assert not est.add(12288 * 8 / 118.0, bw.SOURCE_PASSIVE, 10.0)
    assert est.estimate().kbps > 1500.0
    # Still out at 400 ms: at most 246 kbps, far below the rest of the regime:
    # a new regime starts from the bound, at once.
    assert est.revise(10.0, 12288 * 8 / 400.0)
    e = est.estimate()
    assert e.change and e.samples == 1 and e.kbps == pytest.approx(12288 * 8 / 400.0)
    # A revision close to the regime is averaged, as samples are.
    for i in range(11, 15):
        est.add(250.0, bw.SOURCE_PASSIVE, float(i))
    assert est.revise(14.0, 300.0) and not est.estimate().change
    assert est.estimate().samples == 5


def test_a_bound_caps_the_estimate_until_its_transfer_lands() -> None:
    est = bw.BandwidthEstimator(window=8)
    # A transfer that straddled a step down measured the mean of two rates.
    est.add(145.0, bw.SOURCE_PASSIVE, 1.0)
    # The next one is still out: at most 130 kbps. Averaged, the estimate would
    # stay above what the link can carry now; a bound caps it instead.
    est.add(130.0, bw.SOURCE_PASSIVE, 2.0, bound=True)
    e = est.estimate()
    assert e.kbps == pytest.approx(130.0) and e.capped
    assert est.revise(2.0, 100.0, bound=True)  # still out, a tighter bound
    assert est.estimate().kbps == pytest.approx(100.0)
    assert est.estimate().capped
    # It landed: its measured rate is a sample like the others, averaged.
    assert est.revise(2.0, 90.0)
    e = est.estimate()
    assert e.kbps == pytest.approx(2 / (1 / 145.0 + 1 / 90.0)) and not e.capped


def test_a_transfer_that_landed_after_going_overdue_stands_until_a_clean_sample() -> None:
    est = bw.BandwidthEstimator(window=8)
    for i in range(4):
        est.add(2000.0, bw.SOURCE_PROBE, float(i))
    est.add(300.0, bw.SOURCE_PROBE, 10.0, bound=True)  # overdue: a new regime
    # It landed: the mean of 2000 kbps, then less. It stands for now...
    assert est.revise(10.0, 196.0, mixed=True)
    assert est.estimate().kbps == pytest.approx(196.0)
    # ...and the next clean sample replaces it rather than averaging with it.
    est.add(100.0, bw.SOURCE_PROBE, 11.0)
    e = est.estimate()
    assert e.kbps == pytest.approx(100.0) and e.samples == 1
    # A bound (a transfer still out) does not replace a mixed sample.
    est.revise(11.0, 90.0, mixed=True)
    est.add(80.0, bw.SOURCE_PASSIVE, 12.0, bound=True)
    assert est.estimate().samples == 2
    # Such a probe is followed by another at once.
    s = bw.ProbeScheduler(max_rate_hz=5.0, idle_s=0.0, duty=0.5, probe_bytes=8192)
    assert s.probe_now(20.0, 2000.0)
    assert not s.probe_now(20.1, 2000.0)
    s.landed(0.33, 300.0, overdue=True)
    assert s.probe_now(20.1, 2000.0)


def test_probe_ledger_tells_probes_ahead_of_a_frame_from_those_behind() -> None:
    ledger = bw.ProbeLedger()
    ledger.sent(1, 10.0, 8192)
    ledger.land(0, 9.5, 99.0)  # landed before the frame left: no part of it
    # A frame sent after probe 1 queued behind it: it waited for its bytes,
    # while probe 1 measured the link alone.
    assert ledger.frame(10.1) == (8192, True, [], [])
    assert ledger.land(1, 10.5, 100.0)
    assert ledger.frame(10.1) == (8192, False, [], [])  # ahead, landed
    # Probe 2 went while the frame was out: behind it, it measured a share.
    ledger.sent(2, 10.6, 4096)
    assert ledger.frame(10.1) == (8192, False, [2], [])
    assert not ledger.land(2, 11.0, None)
    # Probe 3 landed before the monitor heard of the frame: its sample goes.
    ledger.sent(3, 11.1, 4096)
    assert ledger.land(3, 11.4, 101.0)
    assert ledger.frame(10.1) == (8192, False, [], [101.0])
    assert ledger.frame(10.1) == (8192, False, [], [])  # once only
    # A frame sent after every probe landed shared nothing.
    assert ledger.frame(12.0) == (0, False, [], [])
    ledger.sent(4, 12.5, 8192)
    ledger.lost(4)
    assert ledger.frame(12.6) == (0, False, [], [])


def test_a_plans_upload_is_recomputed_at_the_bandwidth_its_frames_ran_at() -> None:
    from edgent_ros.planner import PlanBasis
    # Made at 1000 kbps with transfers taking 1.25x bytes / bandwidth: 100 ms.
    basis = PlanBasis(overhead_ms=5.0, device_ms=20.0, device_base_ms=10.0, upload_ms=100.0,
                      upload_bytes=10000, transfer_scale=1.25, bandwidth_kbps=1000.0)
    assert basis.upload_at(1000.0, 1.25) == pytest.approx(100.0)
    # Its frames now run at 500 kbps: bytes / bandwidth is 160 ms, without the scale.
    assert basis.upload_at(500.0) == pytest.approx(160.0)
    assert basis.upload_at(500.0, 2.0) == pytest.approx(320.0)
    assert basis.upload_at(0.0) == pytest.approx(100.0)  # no estimate: as made


def test_device_scale_multiplies_only_the_device_part(paper_planner: Planner) -> None:
    before = paper_planner.latencies(400.0).copy()
    device = paper_planner.device_compute_ms(3, 10)
    assert device == pytest.approx(paper_planner.evaluate(3, 10, 400.0, 1e9).device_ms)
    try:
        paper_planner.set_device_scale(2.0)
        after = paper_planner.latencies(400.0)
        assert after[paper_planner._offsets[0]] == pytest.approx(before[0])  # p = 0: edge only
        d = paper_planner.evaluate(3, 10, 400.0, 1e9)
        assert d.device_ms == pytest.approx(2 * device)
        assert paper_planner.device_compute_ms(3, 10) == pytest.approx(device)  # unscaled
        with pytest.raises(ValueError, match='positive'):
            paper_planner.set_device_scale(0.0)
    finally:
        paper_planner.set_device_scale(1.0)
    assert paper_planner.latencies(400.0) == pytest.approx(before)


def test_device_tail_is_the_rest_of_the_exit_on_the_device(paper_planner: Planner) -> None:
    for e in paper_planner.exits:
        n = len(e.device_layers_ms)
        whole = paper_planner.device_compute_ms(e.exit_point, n)
        assert paper_planner.device_tail_ms(e.exit_point, 0) == pytest.approx(whole)
        assert paper_planner.device_tail_ms(e.exit_point, n) == pytest.approx(0.0)
        half = n // 2
        assert paper_planner.device_tail_ms(e.exit_point, half) == pytest.approx(
            whole - paper_planner.device_compute_ms(e.exit_point, half))
    try:
        paper_planner.set_device_scale(3.0)
        e = paper_planner.exits[0]
        assert paper_planner.device_tail_ms(e.exit_point, 0) == pytest.approx(
            3.0 * paper_planner.device_compute_ms(e.exit_point, len(e.device_layers_ms)))
    finally:
        paper_planner.set_device_scale(1.0)


def test_device_alone_is_algorithm_one_without_the_edge(paper_planner: Planner) -> None:
    for deadline in (50.0, 300.0, 1000.0, 3000.0, 1e6):
        d = paper_planner.device_alone(deadline)
        assert d.partition == d.num_layers  # nothing crosses the link
        alone = {e.exit_point: paper_planner.evaluate(
            e.exit_point, len(e.device_layers_ms), 1.0, deadline) for e in paper_planner.exits}
        meeting = [x for x in alone.values() if x.feasible]
        if meeting:
            assert d.feasible and d.accuracy == max(x.accuracy for x in meeting)
        else:
            assert not d.feasible and d.total_ms == min(x.total_ms for x in alone.values())
    assert not paper_planner.device_alone(1.0).feasible
    # Every exit's device-alone prediction goes with the plan; the fallback's is one.
    per_exit = paper_planner.device_exit_ms()
    assert len(per_exit) == len(paper_planner.exits)
    for deadline in (50.0, 1000.0):
        d = paper_planner.device_alone(deadline)
        assert per_exit[d.exit_point - 1] == pytest.approx(d.total_ms)


def test_a_plan_factor_corrects_one_plans_device_part_only(paper_planner: Planner) -> None:
    before = paper_planner.latencies(400.0).copy()
    flat = paper_planner._flat(2, 5)
    device = paper_planner.evaluate(2, 5, 400.0, 1e9).device_ms - paper_planner.overhead_ms
    try:
        paper_planner.set_plan_factor(2, 5, 1.5)
        after = paper_planner.latencies(400.0)
        assert after[flat] == pytest.approx(before[flat] + 0.5 * device)
        others = np.arange(len(before)) != flat
        assert after[others] == pytest.approx(before[others])
        assert paper_planner.evaluate(2, 5, 400.0, 1e9).total_ms == pytest.approx(after[flat])
        with pytest.raises(ValueError, match='positive'):
            paper_planner.set_plan_factor(2, 5, float('nan'))
    finally:
        paper_planner.clear_plan_factors()
    assert paper_planner.latencies(400.0) == pytest.approx(before)


def test_no_flapping_between_plans_that_both_miss_the_deadline(
        paper_planner: Planner) -> None:
    bw_kbps, deadline = 400.0, 1.0  # nothing meets 1 ms
    totals = paper_planner.latencies(bw_kbps)
    order = np.argsort(totals)
    fastest, second = (paper_planner._decision(int(f), False, bw_kbps, deadline, bw_kbps)
                       for f in order[:2])
    assert not fastest.feasible and not second.feasible
    slow = paper_planner._decision(int(order[-1]), False, bw_kbps, deadline, bw_kbps)
    assert should_switch(paper_planner, slow, fastest, 0.1)  # far faster: switch
    if second.total_ms < fastest.total_ms / 0.9:  # within 10%: keep the one in force
        assert not should_switch(paper_planner, second, fastest, 0.1)


# --- the codec as the third knob (issue 17) ---------------------------------------------
def codec_exits() -> list[ExitCosts]:
    """Two exits; the input may go as a JPEG (smaller, a point less accurate)
    and the activation of exit 2 at partition 1 as int8 (no accuracy lost)."""
    return [
        ExitCosts(1, 0.80, [5.0], [1.0], [12_000, 0], 40,
                  codecs=[CodecCost(0, 'jpeg75', 0.79, 1_000, 0.5, 0.5)]),
        ExitCosts(2, 0.95, [30.0, 300.0], [10.0, 10.0], [12_000, 40_000, 0], 40,
                  codecs=[CodecCost(0, 'pixels', 0.95, 3_000, 0.1, 0.1),
                          CodecCost(0, 'jpeg75', 0.94, 1_000, 0.5, 0.5),
                          CodecCost(1, 'int8_channel', 0.95, 10_000, 1.0, 1.0)]),
    ]


def test_the_codec_is_chosen_as_exit_and_partition_are() -> None:
    planner = Planner(codec_exits())
    # Fast link: raw input to the edge (exit 2, nothing faster at equal accuracy
    # than pixels: 24 kbit vs 96 kbit).
    d = planner.plan(100_000.0, 1000.0)
    assert (d.exit_point, d.accuracy) == (2, 0.95) and d.codec in ('raw', 'pixels')
    # 200 kbps, 200 ms: raw input 480 ms, pixels 120 ms + 20: pixels (lossless) wins.
    d = planner.plan(200.0, 200.0)
    assert d.key == (2, 0, 'pixels') and d.accuracy == 0.95 and d.upload_bytes == 3_000
    # 50 kbps, 200 ms: pixels 480 ms, int8 at 1: 30 + 1600 ... ; jpeg 160 + 21: the JPEG.
    d = planner.plan(50.0, 200.0)
    assert d.key == (2, 0, 'jpeg75') and d.feasible and d.accuracy == 0.94
    # Codecs off: the paper's planner, raw only.
    raw = Planner(codec_exits(), codecs=())
    assert {c for _, _, c in raw.configurations} == {'raw', ''}
    assert raw.plan(50.0, 200.0).exit_point == 1 and raw.plan(50.0, 200.0).codec == ''


def test_the_baselines_with_codecs() -> None:
    planner = Planner(codec_exits())
    # sc2bench's bar: the input as a JPEG, the most accurate exit on the edge.
    d = planner.plan_mode('jpeg_edge_only', 50.0, 200.0)
    assert d.key == (2, 0, 'jpeg75') and d.feasible
    # Neurosurgeon with quantisation: any partition and codec of exit 2.
    d = planner.plan_mode('partition_only_codec', 200.0, 200.0)
    assert d.key == (2, 0, 'pixels')
    # The paper's three send raw float32.
    assert planner.plan_mode('edge_only', 50.0, 200.0).key == (2, 0, 'raw')
    assert planner.plan_mode('partition_only', 50.0, 200.0).codec in ('raw', '')
    with pytest.raises(ValueError, match='no configuration with codec'):
        planner.evaluate(1, 0, 100.0, 100.0, codec='int8')


@settings(max_examples=200, deadline=None)
@given(exits=random_exits(), bw_kbps=st.floats(1.0, 1e5), deadline=st.floats(1.0, 5000.0))
def test_edgent_is_never_less_accurate_than_a_baseline(exits: list[ExitCosts], bw_kbps: float,
                                                       deadline: float) -> None:
    """Edgent searches every configuration a baseline can take: where a
    baseline meets the deadline, Edgent meets it at least as accurately."""
    planner = Planner(exits)
    d = planner.plan(bw_kbps, deadline)
    for mode in ('device_only', 'edge_only', 'partition_only', 'jpeg_edge_only',
                 'partition_only_codec'):
        b = planner.plan_mode(mode, bw_kbps, deadline)
        if b.feasible:
            assert d.feasible and d.accuracy >= b.accuracy - 1e-9, mode


def test_a_codec_outside_its_place_is_refused() -> None:
    with pytest.raises(ValueError, match='cannot code'):
        Planner([ExitCosts(1, 0.8, [1.0, 1.0], [1.0, 1.0], [10, 10, 0], 4,
                           codecs=[CodecCost(1, 'jpeg75', 0.8, 5, 0.0, 0.0)])])
    with pytest.raises(ValueError, match='cannot code'):
        Planner([ExitCosts(1, 0.8, [1.0, 1.0], [1.0, 1.0], [10, 10, 0], 4,
                           codecs=[CodecCost(0, 'int8', 0.8, 5, 0.0, 0.0)])])


@pytest.mark.parametrize('mode', [m for m in MODES if m != 'edgent'])
def test_a_baseline_has_no_early_exit_to_fall_back_to(paper_planner: Planner,
                                                      mode: str) -> None:
    """The baselines (the paper's three, JPEG edge only, partition only with
    codecs) run one exit, the most accurate. A frame of theirs the edge
    answers too late must not be answered by Edgent's early exits on the
    device: on the testbed it was (exit 1, in time), and baselines tied
    Edgent at points where Edgent alone chose exit 1. Their fallback is
    their own exit run whole on the device, and it is the only exit whose
    device time goes with the plan."""
    from edgent_ros import device_policy as dp
    from edgent_ros_interfaces.msg import Plan

    best = paper_planner.plan_mode(mode, 400.0, 50.0).exit_point
    for deadline in (50.0, 1000.0, 1e6):
        d = paper_planner.device_alone(deadline, mode=mode)
        assert (d.exit_point, d.partition) == (best, d.num_layers)
    per_exit = paper_planner.device_exit_ms(mode=mode)
    assert [e for e, ms in enumerate(per_exit, 1) if ms > 0] == [best]
    # Answered alone, a late frame of such a plan runs its own exit or none.
    d = paper_planner.plan_mode(mode, 400.0, 100.0)
    fallback = paper_planner.device_alone(100.0, mode=mode)
    plan = Plan(exit_point=d.exit_point, num_exits=len(paper_planner.exits),
                partition_point=d.partition, num_layers=d.num_layers,
                predicted_latency_ms=d.total_ms, predicted_device_ms=d.device_ms,
                latency_requirement_ms=100.0, fallback_exit_point=fallback.exit_point,
                fallback_num_layers=fallback.num_layers, predicted_fallback_ms=fallback.total_ms,
                predicted_device_tail_ms=paper_planner.device_tail_ms(d.exit_point, d.partition),
                predicted_device_exit_ms=per_exit)
    for age in (0.0, 60.0):
        how = dp.bounded(plan, dp.Route.FALLBACK, age, fallback_exit=fallback.exit_point,
                         head_done=True, have_input=True, behind=0)
        assert how.exit_point in (0, best)
    # Edgent's own fallback still right-sizes.
    assert paper_planner.device_alone(50.0).exit_point != best or \
        len(paper_planner.exits) == 1


def test_the_edge_wait_is_added_to_remote_plans_only(paper_planner: Planner) -> None:
    planner = Planner(paper_planner.exits)  # its own: the fixture is shared
    before = planner.plan(20000.0, 1000.0)
    assert not before.device_only
    planner.set_edge_wait(400.0)
    during = planner.evaluate_key(before.key, 20000.0, 1000.0)
    assert during.total_ms == pytest.approx(before.total_ms + 400.0)
    assert during.edge_ms == pytest.approx(before.edge_ms + 400.0)
    alone = planner.device_alone(1000.0)
    assert planner.evaluate_key(alone.key, 20000.0, 1000.0).edge_ms == 0.0
    planner.set_edge_wait(1e6)
    assert planner.plan(20000.0, 1000.0).device_only
    with pytest.raises(ValueError):
        planner.set_edge_wait(float('nan'))

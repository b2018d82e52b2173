"""The demo's and the monitor's account of a run (pure: no rclpy): the
trace it replays, a line per plan change and per fallback episode, the
figures per phase, and the PNG timeline (real matplotlib)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from edgent_ros.card import load_card, resolve_model_path
from edgent_ros.report import FrameRecord
from edgent_ros.timeline import (
    EventLog,
    PlanRecord,
    Window,
    answered_by,
    figures_of,
    live_text,
    parse_trace,
    phases,
    render,
    trace_text,
)

T0 = 1_800_000_000.0


def rec(t: float, seq: int, *, remote: bool = True, fallback: bool = False,
        skipped: bool = False, met: bool = True, latency: float = 20.0, exit_point: int = 4,
        partition: int = 0, correct: bool | None = True) -> FrameRecord:
    return FrameRecord(seq=seq, source='device', exit_point=exit_point, partition=partition,
                       predicted_ms=18.0, latency_ms=latency, deadline_met=met, correct=correct,
                       bandwidth_kbps=1000.0, fallback=fallback, received_s=T0 + t,
                       remote=remote, skipped=skipped)


def plan(t: float, plan_id: int, exit_point: int, partition: int, codec: str = 'jpeg90',
         kbps: float = 10000.0) -> PlanRecord:
    return PlanRecord(t=T0 + t, plan_id=plan_id, exit_point=exit_point, partition=partition,
                      num_layers=20, codec=codec, predicted_ms=12.0, bandwidth_kbps=kbps,
                      deadline_ms=40.0)


def test_a_trace_is_rates_and_durations_and_bad_ones_say_why() -> None:
    assert parse_trace('10000:12,300:12,0:6,2000:4') == [
        (0.0, 10000.0), (12.0, 300.0), (24.0, 0.0), (30.0, 2000.0), (34.0, 2000.0)]
    assert trace_text(parse_trace('10000:12,0:6,300:1')) == \
        '10.0 Mbit/s 12 s, link down 6 s, 300 kbit/s 1 s'
    for bad, why in (('', 'KBPS:SECONDS'), ('300', 'KBPS:SECONDS'), ('a:b', 'KBPS:SECONDS'),
                     ('300:0', 'duration'), ('-1:5', 'rate'), ('nan:5', 'rate'),
                     ('inf:5', 'rate'), ('300:inf', 'duration'), ('0:5,300:5', 'start'),
                     ('300:5:1', 'KBPS:SECONDS')):
        with pytest.raises(ValueError, match=why):
            parse_trace(bad)


def test_lines_come_per_plan_change_and_per_fallback_episode_not_per_frame() -> None:
    card = load_card(resolve_model_path('branchy_alexnet_digits'))
    log = EventLog(card, t0=T0)
    first = log.on_plan(plan(0.0, 1, 4, 0))
    assert first is not None and 'plan 1' in first and 'exit 4/5' in first
    assert 'jpeg90' in first and '12 ms of 40 ms' in first
    # The same exit, cut and codec again (a refreshed prediction): no line.
    assert log.on_plan(plan(1.0, 2, 4, 0)) is None
    assert log.plan_changes == 0
    lines = [line for i in range(10) for line in log.on_frame(rec(0.2 * i, i))]
    assert lines == []  # frames the plan answered: nothing to say
    start = log.on_frame(rec(3.0, 20, remote=False, fallback=True, met=False, latency=90.0))
    assert len(start) == 1 and 'FALLBACK' in start[0] and 'frame 20' in start[0]
    assert start[0].lstrip().startswith('3.0 s')
    assert log.on_frame(rec(3.2, 21, remote=False, fallback=True, skipped=True)) == []
    changed = log.on_plan(plan(3.3, 3, 1, 12, codec=''))
    assert changed is not None and 'NEW PLAN 3' in changed and 'on the device' in changed
    assert log.plan_changes == 1
    end = log.on_frame(rec(3.4, 22, remote=False))
    assert len(end) == 1 and 'fallback over after 0.4 s' in end[0]
    assert '2 frames answered alone, 1 in time' in end[0] and 'on the device' in end[0]
    assert log.episodes == [(T0 + 3.0, T0 + 3.4, 2)]
    # The next episode ends when the edge answers again.
    log.on_frame(rec(5.0, 30, remote=False, fallback=True))
    again = log.on_frame(rec(6.0, 31, remote=True))
    assert 'the edge answers again' in again[0] and '1 frame answered alone' in again[0]


def test_figures_per_window_and_per_phase_of_the_trace() -> None:
    frames = [rec(0.5 * i, i) for i in range(20)]  # 0-9.5 s by the edge
    frames += [rec(10.0 + 0.5 * i, 20 + i, remote=False, partition=12, exit_point=1,
                   met=i % 2 == 0, correct=i % 4 != 0) for i in range(8)]  # 10-13.5 s
    frames += [rec(14.0, 40, remote=False, fallback=True, met=False),
               rec(14.5, 41, skipped=True, met=False)]
    assert [answered_by(r) for r in frames[-3:]] == ['device', 'fallback', 'skipped']
    fig = figures_of(frames)
    assert fig['frames'] == 30 and (fig['edge'], fig['device'], fig['fallback'],
                                    fig['skipped']) == (20, 8, 1, 1)
    assert fig['hit_rate'] == pytest.approx(24 / 30)
    window = Window(5.0)
    for r in frames:
        window.add(r)
    recent = window.figures(T0 + 14.6)  # 9.6-14.6 s
    assert recent['frames'] == 10 and recent['fps'] == pytest.approx(10 / 5)
    rows = phases(parse_trace('10000:10,300:5'), frames, [plan(0, 1, 4, 0)], T0)
    assert [r['frames'] for r in rows] == [20, 10]
    assert rows[0]['hit_rate'] == 1.0 and rows[0]['plans'] == ['exit 4, partition 0']
    assert rows[1]['edge'] == 0 and rows[1]['plans'][0] == 'exit 1, partition 12'
    empty = figures_of([])
    assert empty['frames'] == 0 and math.isnan(empty['hit_rate'])
    text = live_text(namespace='/device', elapsed_s=14.6, fig=recent, seconds=5.0,
                     estimate_kbps=310.0, estimate_source='from probes', plan=plan(0, 1, 4, 0),
                     card=None, nodes={'/device/device: co-inference': 'OK'}, total=fig)
    for want in ('310 kbit/s (from probes)', 'plan      1: exit 4, partition 0',
                 'deadline 40 ms', 'fallback 1', '/device/device: co-inference OK'):
        assert want in text


def test_the_timeline_png_is_written(tmp_path: Path) -> None:
    trace = parse_trace('10000:5,0:3,2000:4')
    frames = [rec(0.2 * i, i, remote=i < 25 or i > 40, fallback=25 <= i <= 27,
                  met=i != 26) for i in range(60)]
    plans = [plan(0.0, 1, 4, 0), plan(5.2, 2, 1, 12, codec=''), plan(8.5, 3, 4, 0)]
    estimates = [(T0 + 0.5 * i, 10000.0 if i < 10 else 2.0 if i < 17 else 2000.0)
                 for i in range(24)]
    out = render(tmp_path / 'sub' / 'timeline.png', trace=trace, estimates=estimates,
                 plans=plans, frames=frames, t0=T0, deadline_ms=40.0, title='test')
    assert out.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n' and out.stat().st_size > 20_000
    # Unshaped (no trace), and a run that answered nothing: still a picture.
    assert render(tmp_path / 'none.png', trace=None, estimates=[], plans=[], frames=[],
                  t0=T0, deadline_ms=40.0).is_file()

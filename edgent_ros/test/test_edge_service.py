"""The edge's service policy (edgent_ros.edge_service): EDF over per-source
queues, late answers, rate limits, allow-list, batching, load, and the
planner's predicted wait. Pure: times are passed in."""

from __future__ import annotations

import math

import pytest

from edgent_ros.edge_service import (
    Admit,
    EdgeScheduler,
    EdgeWait,
    Job,
    LoadPublishing,
    ServiceTimes,
)

A = (4, 0, 'jpeg90')
B = (2, 3, 'int8')


def job(source: str, key: tuple[int, int, str] = A, arrival: float = 0.0,
        deadline: float = math.inf) -> Job:
    return Job(source=source, key=key, arrival_s=arrival, deadline_s=deadline)


def test_earliest_deadline_first_across_sources() -> None:
    s = EdgeScheduler()
    for j in (job('/r1', deadline=0.30), job('/r2', deadline=0.10), job('/r3', deadline=0.20),
              job('/r4')):
        assert s.push(j) is Admit.OK
    order = []
    while (n := s.next(0.0)).jobs:
        order.append(n.jobs[0].source)
    assert order == ['/r2', '/r3', '/r1', '/r4']  # no deadline: last


def test_fifo_serves_in_arrival_order_and_computes_everything() -> None:
    s = EdgeScheduler(service='fifo')
    s.times.record(A, 1, 50.0, 0.0)
    s.push(job('/r1', arrival=0.0, deadline=0.01))
    s.push(job('/r2', arrival=0.001, deadline=0.5))
    first = s.next(0.02)
    assert [j.source for j in first.jobs] == ['/r1'] and not first.late


def test_a_frame_that_cannot_meet_its_deadline_is_answered_late_at_once() -> None:
    s = EdgeScheduler()
    s.times.record(A, 1, 30.0, 0.0)  # the tail takes 30 ms
    s.push(job('/r1', arrival=0.0, deadline=0.020))  # 20 ms left: cannot make it
    s.push(job('/r2', arrival=0.0, deadline=0.100))
    n = s.next(0.0)
    assert [j.source for j in n.late] == ['/r1']
    assert [j.source for j in n.jobs] == ['/r2']
    assert s.load(0.0).late_per_s > 0


def test_per_source_queue_is_bounded_and_others_are_not_starved() -> None:
    s = EdgeScheduler(queue_per_source=2)
    assert [s.push(job('/flood', deadline=0.01 * i)) for i in range(5)] == \
        [Admit.OK, Admit.OK] + [Admit.QUEUE_FULL] * 3
    assert s.push(job('/robot', deadline=0.5)) is Admit.OK
    assert s.queue_length == 3


def test_rate_limit_per_source() -> None:
    s = EdgeScheduler(rate_hz=10.0, burst=2.0)
    took = [s.admit('/fast', 0.0) for _ in range(5)]
    assert took == [Admit.OK, Admit.OK] + [Admit.RATE_LIMITED] * 3
    assert s.admit('/other', 0.0) is Admit.OK  # a bucket of its own
    assert s.admit('/fast', 0.1) is Admit.OK  # refilled at 10 Hz


def test_allow_list() -> None:
    s = EdgeScheduler(allowed=['/r1'])
    assert s.admit('/r1', 0.0) is Admit.OK
    assert s.admit('/rogue', 0.0) is Admit.NOT_ALLOWED
    s.push(job('/r1'))
    assert s.set_allowed(['/r2']) and s.queue_length == 0  # /r1's queue dropped
    assert s.admit('/r2', 0.0) is Admit.OK


def test_sources_are_bounded() -> None:
    s = EdgeScheduler(max_sources=2)
    for name in ('/a', '/b'):
        assert s.admit(name, 0.0) is Admit.OK
        s.push(job(name))
    assert s.admit('/c', 0.0) is Admit.TOO_MANY_SOURCES
    while s.next(0.0).jobs:
        pass
    assert s.admit('/c', 0.0) is Admit.OK  # idle ones are forgotten


def test_same_configuration_is_batched_when_it_pays() -> None:
    s = EdgeScheduler(max_batch=4)
    for i in range(3):
        s.push(job(f'/r{i}', deadline=1.0))
    s.push(job('/r9', key=B, deadline=2.0))
    n = s.next(0.0)
    assert len(n.jobs) == 3 and {j.key for j in n.jobs} == {A}  # unmeasured: tried
    s.done(n.jobs, 0.0, 0.030)  # 10 ms per frame in a batch of 3
    s.times.record(A, 1, 5.0, 0.03)  # 5 ms alone: batching does not pay
    for i in range(3):
        s.push(job(f'/r{i}', deadline=1.0))
    assert len(s.next(0.04).jobs) == 1
    assert s.times.batch_pays(A, 3, 0.04 + 31.0)  # measured again after a while


def test_batch_window_waits_for_more_while_the_head_can_afford_it() -> None:
    s = EdgeScheduler(max_batch=4, batch_window_s=0.005)
    s.push(job('/r1', arrival=0.0, deadline=1.0))
    n = s.next(0.001)
    assert not n.jobs and n.wait_s == pytest.approx(0.004)
    s.push(job('/r2', arrival=0.002, deadline=1.0))
    assert len(s.next(0.006).jobs) == 2  # the window closed: both go
    s.push(job('/r3', arrival=0.0, deadline=0.002))  # no slack: no wait
    assert len(s.next(0.0).jobs) == 1


def test_load_reports_queue_busy_share_wait_and_service_times() -> None:
    s = EdgeScheduler(window_s=1.0)
    for i in range(4):
        s.push(job(f'/r{i}', arrival=0.0, deadline=5.0))
    t = 0.0
    while (n := s.next(t)).jobs:
        s.done(n.jobs, t, t + 0.1)
        t += 0.1
    load = s.load(t)
    assert load.queue_length == 0 and load.devices_served == 4
    assert load.busy_share == pytest.approx(0.4)
    assert load.served_per_s == pytest.approx(4.0)
    assert load.service_ms[A] == pytest.approx(100.0)
    assert load.wait_ms == pytest.approx(300.0)  # the 90th percentile of the waits
    s.push(job('/r1', arrival=t, deadline=9.0))
    s.push(job('/r2', arrival=t, deadline=9.0))
    assert s.load(t).queued_work_ms == pytest.approx(200.0)


def test_load_is_published_periodically_and_at_once_on_a_big_change() -> None:
    s = EdgeScheduler()
    pub = LoadPublishing(period_s=1.0, min_interval_s=0.1)
    assert pub.due(s.load(0.0), 0.0)
    assert not pub.due(s.load(0.5), 0.5)
    for i in range(6):
        s.push(job(f'/r{i}'))
    assert not pub.due(s.load(0.05), 0.05)  # within the minimum interval
    assert pub.due(s.load(0.6), 0.6)  # six frames queued: at once
    assert pub.due(s.load(1.7), 1.7)  # the period


def test_service_times_predict_from_the_smallest_batch_measured() -> None:
    t = ServiceTimes()
    assert t.predict_ms(A) == 0.0
    t.record(A, 4, 40.0, 0.0)
    assert t.predict_ms(A) == pytest.approx(10.0)
    assert t.predict_ms(A, 2) == pytest.approx(20.0)


def test_edge_wait_follows_the_published_load_corrected_by_own_frames() -> None:
    w = EdgeWait(stale_s=3.0, alpha=0.5)
    assert w.wait_ms(0.0) == 0.0
    w.published(20.0, 0.9, 0.0)
    assert w.wait_ms(0.0) == 20.0
    for t in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6):
        w.measured(40.0, t)  # our frames wait 40 ms there
    assert 35.0 < w.wait_ms(0.6) <= 40.0
    w.published(0.0, 0.0, 1.0)  # the edge emptied: the correction stays, the wait falls
    assert w.wait_ms(1.0) < 25.0
    assert w.wait_ms(10.0) == 0.0  # nothing heard for long: no wait assumed
    with pytest.raises(ValueError):
        w.published(math.nan, 0.0, 0.0)

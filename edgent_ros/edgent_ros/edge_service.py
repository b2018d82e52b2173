"""How an edge shared by several devices serves them, without ROS.

Edgent plans each device as if the edge were idle. When robots share an
edge, each one's plan assumes compute the others are using and their
deadlines fail together. This module is the edge's side of sharing it and
the planner's view of it:

- ``EdgeScheduler``: a bounded queue per source (device), served earliest
  deadline first across all of them (each tensor carries the time it has
  left, ``Tensor.deadline_ms``); a frame that can no longer meet its
  deadline when its turn would come is answered late at once, without being
  computed, so that the device falls back while that still helps; a token
  bucket per source and an optional allow-list of sources, so one
  misbehaving or rogue publisher cannot starve the others; batches of
  tensors of the same (exit, partition, codec), when measured to be faster
  per frame than one by one; and the edge's load (queue, busy share, wait,
  service time per configuration) for ``EdgeLoad``.
- ``LoadPublishing``: when the edge publishes its load (a period, and at
  once on a big change, rate-bounded).
- ``EdgeWait``: the planner's predicted wait at the edge, from the edge's
  published load, corrected by what its own frames measured there.

Times are seconds on a clock the caller passes in (monotonic); durations
in milliseconds where the messages have them. Never imports rclpy.
"""

from __future__ import annotations

import enum
import math
import statistics
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

Key = tuple[int, int, str]  # (exit, partition, codec) of a tensor

SERVICES = ('edf', 'fifo')
# Service times remembered per (configuration, batch size): the newest.
KEEP_TIMES = 32
# A measurement of a batch size older than this is tried again (the load
# and the machine change), s.
REMEASURE_S = 30.0
# Batching a size must be at least this much faster per frame than one by one.
BATCH_GAIN = 0.95


class Admit(enum.Enum):
    OK = 'ok'
    NOT_ALLOWED = 'not_allowed'  # source not in the allow-list: dropped, no reply
    RATE_LIMITED = 'rate_limited'  # over its rate: dropped, no reply (no amplification)
    TOO_MANY_SOURCES = 'too_many_sources'  # more sources than max_sources: dropped
    QUEUE_FULL = 'queue_full'  # its queue holds queue_per_source frames: answered busy


@dataclass
class Job:
    """One tensor waiting at the edge. ``payload`` is the caller's (the
    decoded activation and what the reply needs); the scheduler never looks."""

    source: str
    key: Key
    arrival_s: float
    deadline_s: float  # math.inf: no deadline
    payload: object = None
    order: int = 0  # arrival order, set by push


@dataclass
class Next:
    """What to do now: compute ``jobs`` together (one key, deadline order),
    answer ``late`` as late at once; with no jobs, nothing is ready before
    ``wait_s`` from now (math.inf: the queues are empty)."""

    jobs: list[Job] = field(default_factory=list)
    late: list[Job] = field(default_factory=list)
    wait_s: float = math.inf


@dataclass(frozen=True)
class Load:
    """The edge's state, as EdgeLoad carries it."""

    queue_length: int
    queued_work_ms: float
    busy_share: float
    wait_ms: float
    served_per_s: float
    late_per_s: float
    refused_per_s: float
    batches_per_s: float
    devices_served: int
    window_s: float
    service_ms: dict[Key, float]


class TokenBucket:
    """``rate_hz`` tokens a second, at most ``burst`` held; a frame takes one."""

    def __init__(self, rate_hz: float, burst: float, now_s: float) -> None:
        self.rate_hz, self.burst = rate_hz, burst
        self.tokens, self.stamp = burst, now_s

    def take(self, now_s: float) -> bool:
        self.tokens = min(self.burst, self.tokens + max(0.0, now_s - self.stamp) * self.rate_hz)
        self.stamp = max(self.stamp, now_s)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class ServiceTimes:
    """Measured time of each configuration's tail, per batch size."""

    def __init__(self) -> None:
        # (key, batch size) -> deque of (when, ms per frame)
        self._times: dict[tuple[Key, int], deque[tuple[float, float]]] = {}

    def record(self, key: Key, size: int, batch_ms: float, now_s: float) -> None:
        times = self._times.setdefault((key, size), deque(maxlen=KEEP_TIMES))
        times.append((now_s, batch_ms / size))

    def per_frame_ms(self, key: Key, size: int = 1) -> float | None:
        times = self._times.get((key, size))
        return statistics.median(t for _, t in times) if times else None

    def predict_ms(self, key: Key, size: int = 1) -> float:
        """Predicted time of a batch of ``size`` of ``key``, ms (0: never measured)."""
        per = self.per_frame_ms(key, size)
        if per is None:
            per = self.per_frame_ms(key, 1)
        if per is None:  # measured only in batches: the smallest batch's per frame
            sizes = sorted(s for k, s in self._times if k == key)
            per = self.per_frame_ms(key, sizes[0]) if sizes else 0.0
        return per * size

    def batch_pays(self, key: Key, size: int, now_s: float) -> bool:
        """Whether a batch of ``size`` is measured faster per frame than one by
        one; True to measure it when it never was, or long ago (REMEASURE_S)."""
        if size <= 1:
            return True
        batched, single = self._times.get((key, size)), self.per_frame_ms(key, 1)
        if not batched or single is None or now_s - batched[-1][0] > REMEASURE_S:
            return True
        return statistics.median(t for _, t in batched) < BATCH_GAIN * single

    def recent(self, since_s: float) -> dict[Key, float]:
        """Median per-frame time of each key run alone (else in its smallest
        batch) since ``since_s``."""
        out: dict[Key, float] = {}
        for (key, _size), times in sorted(self._times.items(), key=lambda kv: kv[0][1]):
            recent = [t for when, t in times if when >= since_s]
            if recent and key not in out:
                out[key] = statistics.median(recent)
        return out


class EdgeScheduler:
    """Per-source queues served earliest deadline first; not thread-safe
    (the node holds a lock around every call)."""

    def __init__(self, *, service: str = 'edf', queue_per_source: int = 4,
                 rate_hz: float = 0.0, burst: float = 0.0,
                 allowed: Iterable[str] = (), max_sources: int = 32,
                 max_batch: int = 1, batch_window_s: float = 0.0,
                 window_s: float = 2.0) -> None:
        if service not in SERVICES:
            raise ValueError(f'service must be one of {", ".join(SERVICES)}, got {service!r}')
        self.service = service
        self.queue_per_source = queue_per_source
        self.rate_hz, self.burst = rate_hz, burst
        self.allowed = frozenset(allowed)
        self.max_sources = max_sources
        self.max_batch, self.batch_window_s = max_batch, batch_window_s
        self.window_s = window_s
        self.times = ServiceTimes()
        self._queues: dict[str, list[Job]] = {}
        self._buckets: dict[str, TokenBucket] = {}
        self._order = 0
        # (when, what) of recent events for the load: 'served', 'late', 'refused', 'batch'
        self._events: deque[tuple[float, str, str]] = deque()
        self._busy: deque[tuple[float, float]] = deque()  # (start, end) of computing
        self._waits: deque[tuple[float, float]] = deque()  # (when served, waited ms)

    # --- admission ----------------------------------------------------------------
    def admit(self, source: str, now_s: float) -> Admit:
        """Whether a tensor from ``source`` may be queued (QUEUE_FULL comes from push)."""
        why = self._admit(source, now_s)
        if why is not Admit.OK:
            self._note(now_s, 'refused', source)
        return why

    def _admit(self, source: str, now_s: float) -> Admit:
        if self.allowed and source not in self.allowed:
            return Admit.NOT_ALLOWED
        if source not in self._queues and len(self._queues) >= self.max_sources:
            self._forget_idle()
            if len(self._queues) >= self.max_sources:
                return Admit.TOO_MANY_SOURCES
        if self.rate_hz > 0:
            bucket = self._buckets.get(source)
            if bucket is None:
                bucket = self._buckets[source] = TokenBucket(
                    self.rate_hz, max(1.0, self.burst or self.rate_hz), now_s)
            if not bucket.take(now_s):
                return Admit.RATE_LIMITED
        return Admit.OK

    def _forget_idle(self) -> None:
        for source in [s for s, q in self._queues.items() if not q]:
            del self._queues[source]
            self._buckets.pop(source, None)

    def push(self, job: Job) -> Admit:
        """Queue an admitted job; QUEUE_FULL (not queued) when its source's
        queue is full: the caller answers it busy."""
        queue = self._queues.setdefault(job.source, [])
        if len(queue) >= self.queue_per_source:
            self._note(job.arrival_s, 'refused', job.source)
            return Admit.QUEUE_FULL
        self._order += 1
        job.order = self._order
        queue.append(job)
        return Admit.OK

    def set_allowed(self, allowed: Iterable[str]) -> list[Job]:
        """A new allow-list (empty: every source); queued jobs of sources no
        longer allowed are dropped and returned."""
        self.allowed = frozenset(allowed)
        dropped = []
        if self.allowed:
            for source in [s for s in self._queues if s not in self.allowed]:
                dropped += self._queues.pop(source)
                self._buckets.pop(source, None)
        return dropped

    def set_rate(self, rate_hz: float, burst: float = 0.0) -> None:
        self.rate_hz, self.burst = rate_hz, burst
        self._buckets.clear()

    @property
    def queue_length(self) -> int:
        return sum(len(q) for q in self._queues.values())

    def drain(self) -> list[Job]:
        """Every queued job, removed (the node is stopping)."""
        jobs = [j for q in self._queues.values() for j in q]
        self._queues.clear()
        return jobs

    # --- service ------------------------------------------------------------------
    def _rank(self, job: Job) -> tuple[float, int]:
        return (job.deadline_s, job.order) if self.service == 'edf' else (0.0, job.order)

    def next(self, now_s: float) -> Next:
        """The jobs to compute now (or what to answer late, or how long to wait)."""
        out = Next()
        jobs = [j for q in self._queues.values() for j in q]
        if not jobs:
            return out
        if self.service == 'edf':  # what cannot make it any more is answered late now
            for j in jobs:
                if now_s + self.times.predict_ms(j.key) / 1e3 > j.deadline_s:
                    out.late.append(j)
            if out.late:
                self._remove(out.late)
                for j in out.late:
                    self._note(now_s, 'late', j.source)
                jobs = [j for j in jobs if j not in out.late]
                if not jobs:
                    return out
        jobs.sort(key=self._rank)
        head = jobs[0]
        same = [j for j in jobs if j.key == head.key][:self.max_batch]
        size = len(same)
        if size > 1 and not self.times.batch_pays(head.key, size, now_s):
            size = 1  # per-frame time falls with the batch: a smaller one pays less
        while size > 1 and not self._fits(same[:size], now_s):
            size -= 1
        if size < self.max_batch and self.batch_window_s > 0 and \
                self.times.batch_pays(head.key, size + 1, now_s):
            # Wait for more of this key while the window is open and the head
            # can afford it.
            until = head.arrival_s + self.batch_window_s
            if until > now_s and until + self.times.predict_ms(head.key, size + 1) / 1e3 \
                    <= head.deadline_s:
                out.wait_s = until - now_s
                return out
        out.jobs = same[:size]
        self._remove(out.jobs)
        return out

    def _fits(self, batch: Sequence[Job], now_s: float) -> bool:
        end = now_s + self.times.predict_ms(batch[0].key, len(batch)) / 1e3
        return all(end <= j.deadline_s for j in batch)

    def _remove(self, jobs: Sequence[Job]) -> None:
        gone = {id(j) for j in jobs}
        for source in {j.source for j in jobs}:
            self._queues[source] = [j for j in self._queues[source] if id(j) not in gone]

    def done(self, jobs: Sequence[Job], start_s: float, end_s: float) -> None:
        """``jobs`` (one batch) were computed from ``start_s`` to ``end_s``."""
        ms = (end_s - start_s) * 1e3
        self.times.record(jobs[0].key, len(jobs), ms, end_s)
        self._busy.append((start_s, end_s))
        self._note(end_s, 'batch', '')
        for j in jobs:
            self._note(end_s, 'served', j.source)
            self._waits.append((end_s, max(0.0, (start_s - j.arrival_s) * 1e3)))

    def _note(self, now_s: float, what: str, source: str) -> None:
        self._events.append((now_s, what, source))
        self._trim(now_s)

    def _trim(self, now_s: float) -> None:
        start = now_s - self.window_s
        for d in (self._events, self._waits):
            while d and d[0][0] < start:
                d.popleft()
        while self._busy and self._busy[0][1] < start:
            self._busy.popleft()

    # --- load ---------------------------------------------------------------------
    def load(self, now_s: float) -> Load:
        self._trim(now_s)
        w = self.window_s
        start = now_s - w
        busy = sum(max(0.0, min(e, now_s) - max(s, start)) for s, e in self._busy)
        counts = {k: 0 for k in ('served', 'late', 'refused', 'batch')}
        sources = set()
        for _, what, source in self._events:
            counts[what] += 1
            if what == 'served':
                sources.add(source)
        queued = [j for q in self._queues.values() for j in q]
        queued_ms = sum(self.times.predict_ms(j.key) for j in queued)
        waits = sorted(ms for _, ms in self._waits)
        p90 = waits[min(len(waits) - 1, int(0.9 * len(waits)))] if waits else 0.0
        return Load(
            queue_length=len(queued), queued_work_ms=queued_ms,
            busy_share=min(1.0, busy / w), wait_ms=max(queued_ms, p90),
            served_per_s=counts['served'] / w, late_per_s=counts['late'] / w,
            refused_per_s=counts['refused'] / w, batches_per_s=counts['batch'] / w,
            devices_served=len(sources), window_s=w,
            service_ms=self.times.recent(start))


class LoadPublishing:
    """When to publish the load: every ``period_s``, and at once (but not
    within ``min_interval_s`` of the last) when the wait, busy share or queue
    moved a lot since the last one published."""

    def __init__(self, period_s: float = 1.0, min_interval_s: float = 0.1) -> None:
        self.period_s, self.min_interval_s = period_s, min_interval_s
        self.last_s = -math.inf
        self.last: Load | None = None

    def due(self, load: Load, now_s: float) -> bool:
        since = now_s - self.last_s
        if since >= self.period_s or (since >= self.min_interval_s and
                                      big_change(self.last, load)):
            self.last_s, self.last = now_s, load
            return True
        return False


def big_change(before: Load | None, now: Load) -> bool:
    """A change of load that planners should hear of at once."""
    if before is None:
        return True
    return (abs(now.wait_ms - before.wait_ms) > max(5.0, 0.5 * before.wait_ms)
            or abs(now.busy_share - before.busy_share) >= 0.2
            or abs(now.queue_length - before.queue_length) >= 4
            or now.devices_served != before.devices_served)


class EdgeWait:
    """The planner's predicted wait at the edge before a frame's tail starts, ms.

    From the edge's published load (``published``), corrected by what this
    device's own frames measured there (``measured``: the edge's time from
    receipt to reply less the plan's predicted edge compute): the correction
    is a moving average of measured minus published, so a device whose
    frames wait longer than the edge says (its deadlines, its codec) plans
    with that. A load older than ``stale_s`` (the edge stopped publishing)
    counts no more; then the frames' own measurement alone, which ages out
    after ``stale_s`` too (a device that no longer sends learns nothing new).
    """

    def __init__(self, *, stale_s: float = 3.0, alpha: float = 0.2) -> None:
        self.stale_s, self.alpha = stale_s, alpha
        self.published_ms, self.published_s = 0.0, -math.inf
        self.correction_ms = 0.0
        self.own_ms, self.own_s = 0.0, -math.inf
        self.busy_share = 0.0

    def published(self, wait_ms: float, busy_share: float, now_s: float) -> None:
        if not (math.isfinite(wait_ms) and wait_ms >= 0):
            raise ValueError(f'wait must be a number >= 0 ms, got {wait_ms}')
        self.published_ms, self.published_s = float(wait_ms), now_s
        self.busy_share = float(busy_share) if math.isfinite(busy_share) else 0.0

    def measured(self, waited_ms: float, now_s: float) -> None:
        """One frame of this device waited ``waited_ms`` at the edge beyond its compute."""
        if not math.isfinite(waited_ms):
            return
        waited_ms = max(0.0, waited_ms)
        a = self.alpha
        self.own_ms = waited_ms if now_s - self.own_s > self.stale_s else \
            (1 - a) * self.own_ms + a * waited_ms
        self.own_s = now_s
        if self.fresh(now_s):
            self.correction_ms = (1 - a) * self.correction_ms + a * (waited_ms - self.published_ms)

    def fresh(self, now_s: float) -> bool:
        return now_s - self.published_s <= self.stale_s

    def wait_ms(self, now_s: float) -> float:
        if self.fresh(now_s):
            return max(0.0, self.published_ms + self.correction_ms)
        if now_s - self.own_s <= self.stale_s:
            return self.own_ms
        return 0.0

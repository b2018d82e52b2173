"""What the device does with each frame when the edge may fail: a pure policy.

The device node is an I/O shell around :class:`DevicePolicy`: it converts
messages, runs layers and publishes, and asks the policy every decision,
passing the time in (seconds on the node's clock) and the frame's age.
Nothing here reads a clock, imports rclpy or runs a layer, so every path of
the state machine can be driven by a test with a fake clock.

The rules:

- A frame older than the deadline when the device takes it (the device
  fell behind) is skipped (``skip_late``): computing it would make the
  frames behind it late too.
- A device-only plan (partition = the exit's layer count) is answered on
  the device.
- Otherwise, while the edge answers, the frame's activation goes to it; it
  waits for the reply until the last moment a local answer still meets the
  deadline (:func:`reply_wait_s`). Then the device answers it alone and
  takes the edge as down: the following frames are answered on the device
  at once, and every ``edge_retry_s`` one of them also goes to the edge as a
  trial (one at a time). Any reply, even a late one, brings co-inference
  back.
- A frame answered alone takes the route :func:`local_route` chooses, the
  one rule for finishing the plan's exit from the activation versus running
  the fallback exit from the input. A frame that kept neither is still
  answered (as a failure) and counted, never dropped.

Every transfer that ends (a reply) or is still out yields a
:class:`TransferFact` for the bandwidth monitor; what counts as a bandwidth
sample is for ``edgent_ros.bandwidth`` alone to decide.
"""

from __future__ import annotations

import enum
import math
import statistics
import threading
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from edgent_ros import codec_names
from edgent_ros.edge_choice import edges_problem
from edgent_ros.inference import reply_wait_ms

# While a transfer is out, a fact about it goes to the bandwidth monitor this
# often, for at most this long after it was sent (after the frame was given up on too).
REPORT_PERIOD_S = 0.1
REPORT_FOR_S = 10.0
KEEP_GIVEN_UP = 64
# The wait for the edge leaves the local answer its predicted time with room
# for its spread: on the dynamic trace, frames given up with exactly the
# predicted tail left were finished up to 70 ms late.
LOCAL_SPREAD = 1.25
LOCAL_SLACK_MS = 20.0

COUNTERS = ('received', 'frames', 'results', 'sent', 'replies', 'malformed_images',
            'malformed_replies', 'bad_plans', 'edge_timeouts', 'late_replies', 'fallback', 'trials',
            'edge_recoveries', 'correct', 'labelled', 'skipped_late', 'dropped_behind',
            'compute_errors', 'unanswerable', 'bad_labels', 'late_unrun', 'frames_lost',
            'oversized_images', 'trials_withheld', 'encode_fallbacks', 'edge_late',
            'edge_busy')
# A trial carries a frame's input only if, at the estimated bandwidth, it
# crosses the link in at most this share of the deadline (input_trial_fits).
INPUT_TRIAL_SHARE = 0.25
# A label's frame id longer than this is refused (labels are kept by it).
MAX_FRAME_ID_CHARS = 256


class Counters:
    """Counts kept by two threads (the compute thread and the executor): every
    change and every read goes through one lock."""

    def __init__(self, names: tuple[str, ...] = COUNTERS) -> None:
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(names, 0)
        self._latencies: deque[float] = deque(maxlen=200)
        self._hits: deque[bool] = deque(maxlen=200)

    def inc(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    def answered(self, latency_ms: float, deadline_met: bool, label: int, class_id: int) -> None:
        """One result went out."""
        with self._lock:
            self._counts['results'] += 1
            self._latencies.append(latency_ms)
            self._hits.append(deadline_met)
            if label >= 0:
                self._counts['labelled'] += 1
                self._counts['correct'] += int(label == class_id)

    def __getitem__(self, name: str) -> int:
        with self._lock:
            return self._counts[name]

    def snapshot(self) -> dict[str, float]:
        """The counts, with latency and deadline statistics of recent results."""
        with self._lock:
            values: dict[str, float] = dict(self._counts)
            lat = sorted(self._latencies)
            hits = list(self._hits)
        values['latency_ms_median'] = statistics.median(lat) if lat else 0.0
        values['latency_ms_p95'] = lat[int(0.95 * (len(lat) - 1))] if lat else 0.0
        values['deadline_hit_rate'] = sum(hits) / len(hits) if hits else 0.0
        values['accuracy'] = values['correct'] / values['labelled'] if values['labelled'] \
            else 0.0
        return values


class Route(enum.Enum):
    """How a frame is answered on the device alone."""

    FINISH = 'finish'  # the plan's exit, finished from the activation
    FALLBACK = 'fallback'  # the plan's fallback exit, whole, from the input
    NONE = 'none'  # neither is kept: answered as a failure
    LATE = 'late'  # no route meets the deadline and frames wait: answered at once, not run


@dataclass(frozen=True)
class Alone:
    """How a frame is answered on the device alone: the route, and for
    ``FALLBACK`` the exit run whole from the input, with its prediction."""

    route: Route
    exit_point: int = 0
    predicted_ms: float = 0.0


class Take(enum.Enum):
    """What to do with a frame the device takes."""

    SKIP = 'skip'  # older than the deadline already: answered as skipped
    DEVICE_ONLY = 'device_only'  # the plan runs every layer on the device
    # ... and an edge has just (re)appeared: its input also goes to it as a
    # trial, whose reply measures the link (device-only plans send nothing,
    # and an estimate left low by a dead edge would keep them in force)
    DEVICE_ONLY_TRIAL = 'device_only_trial'
    SEND = 'send'  # run the head, send the activation to the edge
    ALONE = 'alone'  # the edge is down or absent: answer on the device
    TRIAL = 'trial'  # answer on the device, and send it to the edge as a trial


def finish_ms(plan: object) -> float:
    """Predicted latency of a frame answered on the device alone by finishing
    the plan's exit: the plan's device part (its layers with their
    calibration, and the per-frame overhead) plus the tail.

    This is the quantity the fallback's ``predicted_fallback_ms`` is (the
    planner's prediction of a frame run whole on the device: calibrated
    layers plus the overhead once), so the two compare like with like. The
    planner's ``predicted_device_tail_ms`` alone has neither the overhead nor
    the plan factor, and is only what is *left* once the head has run.
    """
    return plan.predicted_device_ms + plan.predicted_device_tail_ms


def local_route(plan: object, age_ms: float, *, head_done: bool, have_activation: bool,
                have_input: bool) -> Route:
    """The one rule for a frame answered alone: finish the plan's exit from
    the activation, or run the fallback exit from the input.

    Finish (the plan's accuracy) when its predicted latency (:func:`finish_ms`)
    is no greater than the fallback's, or there is no deadline, or what is
    left of it (the tail once the head has run, ``head_done``; else all of it)
    still meets the deadline from the frame's age. Else the fallback. A plan
    that does not predict the tail (0: an older planner, or none) finishes
    only when the input is gone. With neither the activation (nor the input
    to compute it from) nor the input, nothing can answer: :attr:`Route.NONE`.
    """
    can_finish = have_activation or (not head_done and have_input)
    if not can_finish:
        return Route.FALLBACK if have_input else Route.NONE
    if not have_input:
        return Route.FINISH
    tail_ms = plan.predicted_device_tail_ms
    if tail_ms <= 0:
        return Route.FALLBACK
    deadline_ms = plan.latency_requirement_ms
    left_ms = tail_ms if head_done else finish_ms(plan)
    if finish_ms(plan) <= plan.predicted_fallback_ms or deadline_ms <= 0 or \
            age_ms + left_ms <= deadline_ms:
        return Route.FINISH
    return Route.FALLBACK


def exit_ms(plan: object, exit_point: int) -> float:
    """Predicted time of an exit run whole on the device alone (0: unknown)."""
    known = list(plan.predicted_device_exit_ms)
    if 1 <= exit_point <= len(known) and known[exit_point - 1] > 0:
        return float(known[exit_point - 1])
    return float(plan.predicted_fallback_ms) if exit_point == plan.fallback_exit_point else 0.0


def bounded(plan: object, route: Route, age_ms: float, *, fallback_exit: int, head_done: bool,
            have_input: bool, behind: int, skip_late: bool = True) -> Alone:
    """Bounded lateness, the second step of answering alone: ``route`` (what
    :func:`local_route` chose) if it still meets the deadline from the frame's
    age; else the most accurate exit that does, run whole from the input (a
    cheaper one than the fallback, for a frame that waited); else, with
    ``behind`` frames waiting for the device, none is run: the frame is
    answered at once as late (computing it would only make them late too);
    with none waiting, the quickest answer, late. A frame already past its
    deadline is not run at all (``skip_late``, as a camera frame taken that
    late is skipped): answered at once as late."""
    if route is Route.NONE:
        return Alone(Route.NONE)
    if skip_late and 0 < plan.latency_requirement_ms <= age_ms:
        return Alone(Route.LATE)
    if route is Route.FINISH:
        left = plan.predicted_device_tail_ms if head_done else finish_ms(plan)
        chosen = Alone(Route.FINISH, plan.exit_point, finish_ms(plan))
    else:
        left = exit_ms(plan, fallback_exit) or plan.predicted_fallback_ms
        chosen = Alone(Route.FALLBACK, fallback_exit, left)
    deadline_ms = plan.latency_requirement_ms
    if deadline_ms <= 0 or left <= 0 or age_ms + left <= deadline_ms:
        return chosen
    known = {e: exit_ms(plan, e) for e in range(plan.num_exits, 0, -1)} if have_input else {}
    known = {e: ms for e, ms in known.items() if ms > 0}
    for e, ms in known.items():  # the most accurate first
        if age_ms + ms <= deadline_ms:
            return Alone(Route.FALLBACK, e, ms)
    if behind > 0:
        return Alone(Route.LATE)
    if known and min(known.values()) < left:
        e = min(known, key=known.__getitem__)
        return Alone(Route.FALLBACK, e, known[e])
    return chosen


def local_ms(plan: object) -> float:
    """Predicted time left to the quicker local answer once the head has run:
    finishing the exit (the tail) or the fallback exit (whole; part of its
    overhead is already spent, so this errs on the side of answering early).
    A frame given up on this long before the deadline still meets it:
    :func:`local_route` finishes when the tail still fits, else falls back."""
    tail_ms = plan.predicted_device_tail_ms
    if tail_ms <= 0:
        return plan.predicted_fallback_ms
    return min(tail_ms, plan.predicted_fallback_ms)


def reply_wait_s(plan: object, age_ms: float, reply_timeout_s: float) -> float:
    """How long a frame sent now (``age_ms`` after capture) waits for the edge:
    until the last moment a local answer still meets the deadline, never
    before twice the predicted remote part, never after ``reply_timeout_s``
    (see ``inference.reply_wait_ms``)."""
    wait_ms = reply_wait_ms(remote_ms=plan.predicted_latency_ms - plan.predicted_device_ms,
                            fallback_ms=LOCAL_SPREAD * local_ms(plan) + LOCAL_SLACK_MS,
                            deadline_ms=plan.latency_requirement_ms, age_ms=age_ms)
    return min(wait_ms / 1e3, reply_timeout_s)


def edge_budget_ms(plan: object, wait_s: float) -> float:
    """What a tensor tells the edge of its deadline (Tensor.deadline_ms): the
    time the edge has from its arrival to reply in time, ms. The device waits
    ``wait_s`` for the reply (:func:`reply_wait_s`: until a local answer
    would no longer meet the deadline); the plan's predicted upload and
    download come off it. Never 0 (which says no deadline): at least a
    microsecond, or below 0 when nothing is left."""
    budget = wait_s * 1e3 - plan.predicted_upload_ms - plan.predicted_download_ms
    if not math.isfinite(budget):
        return 0.0 if budget > 0 else -1.0
    return budget if abs(budget) >= 1e-3 else -1e-3


def reply_problem(class_ids: Sequence[int], scores: Sequence[float], edge_ms: float,
                  num_classes: int) -> str | None:
    """Why an edge reply cannot be taken as the frame's answer, or None: it
    must carry classes of the model with finite probabilities, as many of
    each, and a finite, non-negative edge time."""
    if len(class_ids) == 0:
        return 'no classes'
    if len(class_ids) != len(scores):
        return f'{len(class_ids)} class ids but {len(scores)} scores'
    bad = [c for c in class_ids if not 0 <= c < num_classes]
    if bad:
        return f'class ids {bad[:3]} outside 0..{num_classes - 1}'
    if not all(math.isfinite(s) and 0.0 <= s <= 1.0 for s in scores):
        return 'scores are not all probabilities (finite, in [0, 1])'
    return time_problem(edge_ms)


def time_problem(edge_ms: float) -> str | None:
    """Why an edge reply's time on the edge cannot be taken, or None."""
    if not (math.isfinite(edge_ms) and edge_ms >= 0.0):
        return f'edge time {edge_ms} ms is not a finite, non-negative time'
    return None


def plan_problem(plan: object, num_exits: int, layers: dict[int, int]) -> str | None:
    """Why the device cannot run a plan with this model, or None."""
    def within(exit_point: int, partition: int) -> str | None:
        if not 1 <= exit_point <= num_exits:
            return f'exit point {exit_point} is outside 1..{num_exits}'
        if not 0 <= partition <= layers[exit_point]:
            return (f'partition point {partition} is outside 0..{layers[exit_point]} for '
                    f'exit {exit_point}')
        return None

    why = within(plan.exit_point, plan.partition_point)
    if why is None and plan.num_exits != num_exits:
        why = f'plan is for {plan.num_exits} exits; the model has {num_exits}'
    exit_ms = list(plan.predicted_device_exit_ms)
    if why is None and len(exit_ms) not in (0, num_exits):
        why = f'{len(exit_ms)} per-exit predictions for {num_exits} exits'
    if why is None and not all(math.isfinite(v) and v >= 0 for v in exit_ms):
        why = 'per-exit predictions are not all finite, non-negative times'
    if why is None and plan.num_layers != layers[plan.exit_point]:
        why = (f'plan says exit {plan.exit_point} has {plan.num_layers} layers; the model '
               f'has {layers[plan.exit_point]} (another model?)')
    if why is None and plan.fallback_exit_point != 0:
        why = within(plan.fallback_exit_point, plan.fallback_num_layers)
        if why is None and plan.fallback_num_layers != layers[plan.fallback_exit_point]:
            why = f'fallback exit {plan.fallback_exit_point} has the wrong layer count'
        why = None if why is None else f'fallback: {why}'
    edge = edge_of(plan)
    if why is None and edge and (',' in edge or not edge.startswith('/') or
                                 edges_problem(edge) is not None):
        why = f'edge namespace {edge[:64]!r} is not a ROS namespace'
    if why is None:
        why = codec_names.codec_problem(plan_codec(plan), plan.partition_point,
                                        plan.num_layers)
    return why


def plan_codec(plan: object) -> str:
    """How a plan's upload is coded: its codec, or ``raw`` when it is empty
    at a partition that sends something (a planner from before codecs)."""
    codec = str(plan.codec)
    if not codec and plan.partition_point < plan.num_layers:
        return codec_names.RAW
    return codec


@dataclass(eq=False)
class Pending:
    """A frame whose activation went to the edge (or a trial, answered already).

    ``x`` (the input) and ``h`` (the activation sent) are opaque to the
    policy: the node keeps them to answer the frame alone."""

    seq: int
    header: object
    plan: object
    label: int
    device_ms: float
    nbytes: int
    partition: int
    trial: bool = False
    measures: bool = True  # its reply is a bandwidth sample (not a new edge's first trial)
    x: object = None
    h: object = None
    sent_s: float = 0.0
    give_up_s: float = math.inf
    reported_s: float = -math.inf  # when a fact about it last went out while out


@dataclass(frozen=True)
class TransferFact:
    """What the device knows of one transfer, for the bandwidth monitor."""

    seq: int
    sent_s: float  # when it was sent (the node's clock)
    nbytes: int
    round_trip_ms: float  # so far, while still out
    edge_held_ms: float  # the edge's time from receipt to reply (0 while out)
    still_out: bool
    given_up: bool  # the device no longer waits for the reply
    expected_ms: float  # the plan's predicted remote part (transfer and edge)
    edge_namespace: str = ''  # the edge it went to (its plan's; '' the one by remapping)


class ReplyKind(enum.Enum):
    ANSWER = 'answer'  # the edge answered a frame in time: the node publishes it
    MALFORMED = 'malformed'  # answer it on the device instead
    TRIAL = 'trial'  # a trial's reply (the frame is answered already)
    LATE = 'late'  # after the device answered alone (or unknown)
    NOT_RUN = 'not_run'  # the edge did not compute it (late, busy): answer it on the device


@dataclass(frozen=True)
class Reply:
    kind: ReplyKind
    pending: Pending | None
    transfer_ms: float = 0.0
    fact: TransferFact | None = None
    recovered: bool = False  # the edge answers again


@dataclass
class Tick:
    expired: list[Pending] = field(default_factory=list)  # to answer on the device
    facts: list[TransferFact] = field(default_factory=list)
    edge_down: Pending | None = None  # the frame whose timeout took the edge as down


def edge_of(plan: object) -> str:
    """The edge a plan sends to ('' : the device's own `tensor`, by remapping)."""
    return getattr(plan, 'edge_namespace', '')


def _expected_ms(plan: object) -> float:
    return max(0.0, plan.predicted_latency_ms - plan.predicted_device_ms)


class DevicePolicy:
    """The device's state between frames: frames out at the edge, frames given
    up on (a late reply still measures the link), whether the edge answers,
    when the last trial went. Shared by the compute thread and the executor:
    every method takes the lock, and none runs a layer."""

    def __init__(self, *, reply_timeout_s: float, edge_retry_s: float,
                 skip_late: bool) -> None:
        self.reply_timeout_s = reply_timeout_s
        self.edge_retry_s = edge_retry_s
        self.skip_late = skip_late
        self.stats = Counters()
        self.edge_ok = True
        self.last_trial_s = -math.inf
        self._new_edge = False
        self._first_trial = False  # the trial being taken is a new edge's first
        self._lock = threading.Lock()
        self._pending: OrderedDict[int, Pending] = OrderedDict()
        self._gave_up: OrderedDict[int, Pending] = OrderedDict()

    @property
    def in_flight(self) -> int:
        with self._lock:
            return len(self._pending)

    def idle(self, now_s: float) -> bool:
        """Whether ``tick`` has nothing to do now or later until the next send:
        no frame out at the edge, and none given up on still being reported.
        The node stops its tick timer then (50 wake-ups a second cost a Pi-class
        device more than the frames do)."""
        with self._lock:
            return not self._pending and all(now_s - p.sent_s >= REPORT_FOR_S
                                             for p in self._gave_up.values())

    def take(self, plan: object, age_ms: float, now_s: float, *, connected: bool) -> Take:
        """A frame taken at ``now_s``, ``age_ms`` after capture; ``connected``:
        an edge is matched on the tensor topic."""
        deadline_ms = plan.latency_requirement_ms
        if self.skip_late and deadline_ms > 0 and age_ms > deadline_ms:
            self.stats.inc('skipped_late')
            return Take.SKIP
        if plan.partition_point == plan.num_layers:
            with self._lock:
                if connected and self._new_edge:
                    self.last_trial_s, self._new_edge = now_s, False
                    self._first_trial = True
                    return Take.DEVICE_ONLY_TRIAL
            return Take.DEVICE_ONLY
        if connected and self.edge_ok:
            return Take.SEND
        with self._lock:
            trial_out = any(p.trial for p in self._pending.values())
            if connected and (self._new_edge or not trial_out) and \
                    now_s - self.last_trial_s >= self.edge_retry_s:
                self._first_trial = self._new_edge
                self.last_trial_s, self._new_edge = now_s, False
                return Take.TRIAL
        return Take.ALONE

    def trial_withheld(self) -> None:
        """A frame taken as a trial did not go (its input is too large for
        the link, ``input_trial_fits``): the next frame may be the trial."""
        with self._lock:
            self.last_trial_s = -math.inf
            # a new edge's first trial stays the first (it measures nothing)
            self._new_edge, self._first_trial = self._new_edge or self._first_trial, False
        self.stats.inc('trials_withheld')

    def edge_appeared(self) -> None:
        """A (new) edge subscribed: the next frame may go to it as a trial at
        once, whenever the last one went."""
        with self._lock:
            self.last_trial_s = -math.inf
            self._new_edge = True  # even with a trial still out (to the edge before)

    def sent(self, p: Pending, now_s: float, age_ms: float) -> None:
        """``p`` went to the edge at ``now_s``, ``age_ms`` after capture."""
        p.sent_s = now_s
        p.give_up_s = now_s + reply_wait_s(p.plan, age_ms, self.reply_timeout_s)
        with self._lock:
            if p.trial:
                p.h = p.x = None  # answered on the device: it only waits for its reply
                p.measures, self._first_trial = not self._first_trial, False
            self._pending[p.seq] = p
        self.stats.inc('trials' if p.trial else 'sent')

    def reply(self, seq: int, now_s: float, edge_held_ms: float, *,
              well_formed: bool, not_run: str = '') -> Reply:
        """The edge answered frame ``seq`` at ``now_s``; ``not_run``: it did
        not compute it, and why ('late': its deadline was out of reach there;
        'busy': its queue was full). Such a frame is answered on the device at
        once, while that may still meet its deadline."""
        with self._lock:
            recovered = not self.edge_ok
            self.edge_ok = True  # any answer, even a late one, shows the edge is back
            p = self._pending.pop(seq, None)
            late = self._gave_up.pop(seq, None) if p is None else None
        if recovered:
            self.stats.inc('edge_recoveries')
        known = p if p is not None else late
        round_trip_ms = (now_s - known.sent_s) * 1e3 if known is not None else 0.0
        # A new edge's first trial is no sample: an edge just started answers
        # its first frame slowly (one read 688 kbps on a 10 Mbit/s link and
        # put the plan on the device for 0.3 s). Later trials' replies measure
        # the link, as any late reply does (without them a starved link was
        # measured by probes alone, which frames then queued behind).
        fact = None if known is None or not known.measures else TransferFact(
            known.seq, known.sent_s, known.nbytes, round_trip_ms, edge_held_ms, False,
            late is not None, _expected_ms(known.plan), edge_of(known.plan))
        if p is None or p.trial:
            if p is None:
                self.stats.inc('late_replies')
            return Reply(ReplyKind.LATE if p is None else ReplyKind.TRIAL, known, fact=fact,
                         recovered=recovered)
        if not well_formed:
            self.stats.inc('malformed_replies')
            return Reply(ReplyKind.MALFORMED, p, recovered=recovered)
        if not_run:
            self.stats.inc(f'edge_{not_run}')
            return Reply(ReplyKind.NOT_RUN, p, fact=fact, recovered=recovered)
        self.stats.inc('replies')
        return Reply(ReplyKind.ANSWER, p, max(0.0, round_trip_ms - edge_held_ms), fact,
                     recovered)

    def tick(self, now_s: float) -> Tick:
        """Give up on the frames whose reply did not come in time (the device
        answers them alone), and report the transfers still out."""
        out = Tick()
        with self._lock:
            for p in self._gave_up.values():
                if p.trial:
                    continue  # see below
                if now_s - p.sent_s < REPORT_FOR_S and now_s - p.reported_s >= REPORT_PERIOD_S:
                    p.reported_s = now_s
                    out.facts.append(self._still_out(p, now_s, given_up=True))
            for seq, p in list(self._pending.items()):
                if now_s < p.give_up_s:
                    if not p.trial and now_s - max(p.sent_s, p.reported_s) >= REPORT_PERIOD_S:
                        p.reported_s = now_s
                        out.facts.append(self._still_out(p, now_s, given_up=False))
                    continue
                del self._pending[seq]
                self._gave_up[seq] = p
                while len(self._gave_up) > KEEP_GIVEN_UP:
                    self._gave_up.popitem(last=False)
                if p.trial:
                    # A trial goes while the edge does not answer: that it is
                    # still out says the edge is not back (or was restarted and
                    # a killed one's subscription lingers), not that the link
                    # is slow. Only its reply, if one comes, measures the link.
                    continue
                p.reported_s = now_s
                out.facts.append(self._still_out(p, now_s, given_up=True))
                out.expired.append(p)
                if self.edge_ok:
                    self.edge_ok = False
                    out.edge_down = p
        if out.expired:
            self.stats.inc('edge_timeouts', len(out.expired))
        return out

    @staticmethod
    def _still_out(p: Pending, now_s: float, *, given_up: bool) -> TransferFact:
        return TransferFact(p.seq, p.sent_s, p.nbytes, (now_s - p.sent_s) * 1e3, 0.0, True,
                            given_up, _expected_ms(p.plan), edge_of(p.plan))

    def health(self, values: dict[str, float]) -> tuple[bool, str]:
        """Whether all is well, and what to say, from a Counters snapshot."""
        bad = sum(int(values[k]) for k in ('malformed_images', 'malformed_replies', 'bad_plans',
                                           'unanswerable', 'oversized_images'))
        if not self.edge_ok:
            return False, 'the edge does not answer: answering frames on the device'
        if bad:
            return False, f'{bad} malformed inputs dropped or frames unanswerable'
        return True, 'co-inference running'

    def route_now(self, take: Take, plan: object, age_ms: float, *, fallback_exit: int,
                  behind: int = 0) -> Alone:
        """How to answer on the device a frame just taken alone (``Take.ALONE``:
        the fallback) or as a trial (:func:`local_route`, the head not run yet;
        finishing means the trial carries the activation, else the input),
        within the deadline if it can be (:func:`bounded`)."""
        route = Route.FALLBACK if take is Take.ALONE else local_route(
            plan, age_ms, head_done=False, have_activation=False, have_input=True)
        return self._count(bounded(plan, route, age_ms, fallback_exit=fallback_exit,
                                   head_done=False, have_input=True, behind=behind,
                                   skip_late=self.skip_late))

    def route(self, p: Pending, age_ms: float, *, fallback_exit: int,
              behind: int = 0) -> Alone:
        """How to answer alone a frame given up on (or sent back malformed),
        ``age_ms`` after capture now, with ``behind`` frames waiting for the
        device. Counts it (fallback, late, or unanswerable)."""
        route = local_route(p.plan, age_ms, head_done=True, have_activation=p.h is not None,
                            have_input=p.x is not None)
        return self._count(bounded(p.plan, route, age_ms, fallback_exit=fallback_exit,
                                   head_done=True, have_input=p.x is not None,
                                   behind=behind, skip_late=self.skip_late))

    def past_deadline(self, p: Pending, age_ms: float) -> bool:
        """Whether a frame given up on is already past its deadline, so that
        it is answered at once as late, without waiting for the compute
        thread (which may be running a frame for hundreds of ms)."""
        return self.skip_late and 0 < p.plan.latency_requirement_ms <= age_ms

    def _count(self, alone: Alone) -> Alone:
        self.stats.inc({Route.NONE: 'unanswerable', Route.LATE: 'late_unrun'}.get(
            alone.route, 'fallback'))
        return alone


def waited_ms(p: Pending) -> float:
    """How long a frame given up on waited for the edge's reply, ms: from
    when its tensor went to when the device gave up on it. 0 for a frame
    never sent (answered alone at once) or a trial (answered before it went)."""
    if p.trial or p.sent_s <= 0 or not math.isfinite(p.give_up_s):
        return 0.0
    return max(0.0, (p.give_up_s - p.sent_s) * 1e3)


def input_trial_fits(input_bytes: int, bandwidth_kbps: float, deadline_ms: float) -> bool:
    """Whether a trial may carry a frame's input (its route on the device ran
    no head, so it has no activation to send): only if, at the estimated
    bandwidth, the input crosses in at most INPUT_TRIAL_SHARE of the
    deadline. On a slow link it would hold the link for seconds (a 12 KB
    input: a second at 100 kbit/s), and the frames sent after it would wait
    behind it, miss their replies and make the device try again: measured on
    the testbed, the link then carried little but such trials. A frame whose
    route carries the activation takes the trial instead. Unknown bandwidth
    (0, not finite) or no deadline: the trial goes."""
    if not (math.isfinite(bandwidth_kbps) and bandwidth_kbps > 0 and deadline_ms > 0):
        return True
    return input_bytes * 8.0 / bandwidth_kbps <= INPUT_TRIAL_SHARE * deadline_ms


class WorkQueue:
    """Work for the compute thread: frames given up on (answered alone) come
    first, their deadline being nearest; then camera frames in order, at most
    ``depth`` of them (the oldest is dropped when the device is that far
    behind)."""

    def __init__(self, depth: int) -> None:
        self._frames: deque[object] = deque(maxlen=depth)
        self._urgent: deque[object] = deque()
        self._wake = threading.Condition()
        self._stopping = False

    def frame(self, item: object) -> bool:
        """Queue a camera frame; False if the oldest waiting one was dropped."""
        with self._wake:
            dropped = len(self._frames) == self._frames.maxlen
            self._frames.append(item)
            self._wake.notify()
        return not dropped

    def waiting(self) -> int:
        """Items waiting for the compute thread."""
        with self._wake:
            return len(self._frames) + len(self._urgent)

    def urgent(self, item: object) -> None:
        with self._wake:
            self._urgent.append(item)
            self._wake.notify()

    def next(self) -> tuple[bool, object] | None:
        """Wait for work: (urgent, item), or None once stopped."""
        with self._wake:
            while not (self._stopping or self._urgent or self._frames):
                self._wake.wait()
            if self._stopping:
                return None
            if self._urgent:
                return True, self._urgent.popleft()
            return False, self._frames.popleft()

    def stop(self) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify_all()


class Labels:
    """What came with frames (label and camera frame number), by (stamp s,
    stamp ns, frame id), the most recent ``keep``; the executor adds, the
    compute thread takes."""

    def __init__(self, keep: int = 512) -> None:
        self._labels: OrderedDict[tuple[int, int, str], tuple[int, int]] = OrderedDict()
        self._keep = keep
        self._lock = threading.Lock()

    def put(self, key: tuple[int, int, str], label: int, seq: int = 0) -> None:
        with self._lock:
            self._labels[key] = (label, seq)
            while len(self._labels) > self._keep:
                self._labels.popitem(last=False)

    def seq(self, key: tuple[int, int, str]) -> int:
        """The frame's number from its camera, or 0 if none came (yet)."""
        with self._lock:
            return self._labels.get(key, (-1, 0))[1]

    def take(self, key: tuple[int, int, str]) -> int:
        """The frame's label, or -1 if none came (yet)."""
        with self._lock:
            return self._labels.pop(key, (-1, 0))[0]


class FrameGaps:
    """Images lost on their way from a camera that numbers its frames: a
    gap between the numbers of two images received from one source (frame
    id) is that many frames lost. A number that goes back is a camera that
    started again. At most ``sources`` frame ids are followed (the oldest
    forgotten), so spoofed ids cannot grow it."""

    def __init__(self, sources: int = 32) -> None:
        self._last: OrderedDict[str, int] = OrderedDict()
        self._sources = sources
        self.lost = 0

    def image(self, source: str, seq: int) -> int:
        """An image numbered ``seq`` (> 0) arrived from ``source``: how many
        were lost just before it."""
        last = self._last.pop(source, None)
        self._last[source] = seq
        while len(self._last) > self._sources:
            self._last.popitem(last=False)
        lost = seq - last - 1 if last is not None and seq > last + 1 else 0
        self.lost += lost
        return lost

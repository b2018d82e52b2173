"""edgent-monitor: what a co-inference pipeline is doing, in a terminal.

Subscribes ``result`` (InferenceResult), ``bandwidth``, ``plan`` and
``/diagnostics`` and shows them one of three ways (``--view``):

- ``live`` (the default on a terminal): the figures the rqt perspective
  plots, redrawn every second: link estimate, plan and where it cuts the
  network, the last seconds' deadline hit rate, accuracy, latency and who
  answered, and each node's health;
- ``events``: a line per plan change and per fallback episode (its start
  and its end), and a status line every ``--status-period`` seconds;
- ``frames`` (the default otherwise): a line per answered frame, and each
  new plan.

After ``--frames`` results (0 = until Ctrl-C or SIGINT) it prints a summary
(frames, deadline hit rate, accuracy, latency median and p95) and exits;
``--json FILE`` also writes the figures, every frame, plan and estimate.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from collections import deque
from dataclasses import asdict

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import ExternalShutdownException
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy

from edgent_ros import dds_profile
from edgent_ros.card import ModelCard, ModelError, load_card, resolve_model_path
from edgent_ros.nodes.runner import GuardedNode
from edgent_ros.qos import LATCHED_QOS
from edgent_ros.report import FrameRecord, Summary, frame_line, summary_text
from edgent_ros.timeline import (
    EventLog,
    PlanRecord,
    Window,
    figures_of,
    live_text,
    plan_text,
    status_text,
)
from edgent_ros_interfaces.msg import BandwidthEstimate, InferenceResult, Plan

VIEWS = ('live', 'events', 'frames')
SOURCES = {BandwidthEstimate.SOURCE_PASSIVE: 'from frames', BandwidthEstimate.SOURCE_PROBE:
           'from probes', BandwidthEstimate.SOURCE_MIXED: 'from frames and probes'}
KEEP = 10000  # frames, plans and estimates kept when nothing is written
LEVELS = {0: 'OK', 1: 'WARN', 2: 'ERROR', 3: 'STALE'}


class Monitor(GuardedNode):

    def __init__(self, view: str = 'frames', quiet: bool = False,
                 card: ModelCard | None = None, window_s: float = 10.0,
                 status_period_s: float = 0.0, keep_all: bool = True,
                 **kwargs: object) -> None:
        super().__init__('monitor', **kwargs)
        self.view = view
        self.quiet = quiet
        self.card = card
        self.plan_id = -1
        self.summary = Summary()
        self.plans: list[PlanRecord] | deque[PlanRecord] = []
        self.estimates: list[tuple[float, float]] | deque[tuple[float, float]] = []
        if not keep_all:  # left running for days without --json: memory stays bounded
            self.summary.records = deque(maxlen=KEEP)  # type: ignore[assignment]
            self.plans, self.estimates = deque(maxlen=KEEP), deque(maxlen=KEEP)
        self.bandwidth_kbps = float('nan')
        self.estimate_source = ''
        self.events = EventLog(card)
        self.window = Window(window_s)
        self.status_period_s = status_period_s
        self.next_status = 0.0
        self.nodes: dict[str, str] = {}
        self.warmup = 0  # frames answered before the first the plan answered
        self.started = time.time()
        self.create_subscription(InferenceResult, 'result', self.on_result, 50)
        self.create_subscription(BandwidthEstimate, 'bandwidth', self.on_bandwidth, LATCHED_QOS)
        self.create_subscription(Plan, 'plan', self.on_plan, LATCHED_QOS)
        self.create_subscription(DiagnosticArray, '/diagnostics', self.on_diagnostics, 10)

    def say(self, line: str) -> None:
        if not self.quiet:
            print(line, flush=True)

    def on_plan(self, msg: Plan) -> None:
        if msg.plan_id == self.plan_id:
            return
        self.plan_id = msg.plan_id
        plan = PlanRecord(
            t=time.time(), plan_id=msg.plan_id, exit_point=msg.exit_point,
            partition=msg.partition_point, num_layers=msg.num_layers, codec=msg.codec,
            predicted_ms=msg.predicted_latency_ms, bandwidth_kbps=msg.bandwidth_kbps,
            deadline_ms=msg.latency_requirement_ms, deadline_met=msg.deadline_met)
        self.plans.append(plan)
        if self.view == 'frames':
            self.say(f'plan {msg.plan_id}: {plan_text(self.card, plan)}')
        elif self.view == 'events' and self.events.t0 is not None:
            line = self.events.on_plan(plan)
            if line:
                self.say(line)

    def on_bandwidth(self, msg: BandwidthEstimate) -> None:
        self.bandwidth_kbps = float(msg.bandwidth_kbps)
        self.estimate_source = SOURCES.get(msg.source, '')
        self.estimates.append((time.time(), self.bandwidth_kbps))

    def on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            level = status.level[0] if isinstance(status.level, bytes) else int(status.level)
            self.nodes[status.name[:60]] = LEVELS.get(level, str(level))
        while len(self.nodes) > 32:  # whatever the domain publishes, the view stays bounded
            self.nodes.pop(next(iter(self.nodes)))

    def on_result(self, msg: InferenceResult) -> None:
        record = FrameRecord(
            seq=msg.frame_seq, source=msg.source_id, exit_point=msg.exit_point,
            partition=msg.partition_point, predicted_ms=msg.predicted_latency_ms,
            latency_ms=msg.latency_ms, deadline_met=msg.deadline_met,
            correct=None if msg.label < 0 else msg.label == msg.class_id,
            bandwidth_kbps=self.bandwidth_kbps, fallback=msg.fallback, received_s=time.time(),
            remote=msg.edge_ms > 0, skipped=msg.skipped, device_ms=msg.device_ms)
        self.summary.add(record)
        self.window.add(record)
        if self.view == 'frames':
            self.say(frame_line(record))
        elif self.view == 'events':
            if self.events.t0 is None:
                if record.fallback or record.skipped:
                    # Before the pipeline is up (the device has not found the edge yet):
                    # counted, and said once, but not a fallback episode of the run.
                    self.warmup += 1
                    if self.warmup == 1:
                        self.say('               first frames answered by the device alone, '
                                 'waiting for the edge')
                    return
                # The first frame the plan answered: the time every line counts from.
                self.say(f'{self.events.stamp(record.received_s)} first frame answered '
                         f'(t0 {record.received_s:.3f})'
                         + (f'; {self.warmup} before it by the device alone while it found '
                            'the edge' if self.warmup else ''))
                self.next_status = record.received_s + self.status_period_s
                if self.plans:
                    self.say(self.events.on_plan(self.plans[-1]) or '')
            for line in self.events.on_frame(record):
                self.say(line)

    def tick(self) -> None:
        """Periodic output: the live view, or the events view's status line."""
        now = time.time()
        if self.view == 'live' and not self.quiet:
            fig = self.window.figures(now)
            text = live_text(
                namespace=self.get_namespace(), elapsed_s=now - self.started, fig=fig,
                seconds=self.window.seconds, estimate_kbps=self.bandwidth_kbps,
                estimate_source=self.estimate_source,
                plan=self.plans[-1] if self.plans else None, card=self.card,
                nodes=self.nodes, total=figures_of(self.summary.records))
            if sys.stdout.isatty():
                sys.stdout.write('\x1b[H\x1b[J')  # redraw in place
            print(text + ('' if sys.stdout.isatty() else '\n'), flush=True)
        elif self.view == 'events' and self.status_period_s > 0 and \
                self.events.t0 is not None and now >= self.next_status:
            self.next_status += self.status_period_s
            status = status_text(self.window.figures(now), self.bandwidth_kbps,
                                 self.window.seconds)
            self.say(f'{self.events.stamp(now)}   {status}')


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='edgent-monitor', description=__doc__.splitlines()[0])
    parser.add_argument('--view', choices=VIEWS, default=None,
                        help='live (default on a terminal), events, or frames (default '
                             'otherwise)')
    parser.add_argument('--frames', type=int, default=0, help='exit after this many results')
    parser.add_argument('--timeout', type=float, default=0.0, help='give up after seconds')
    parser.add_argument('--json', default='', help='write figures, frames, plans, estimates')
    parser.add_argument('--quiet', action='store_true', help='summary only')
    parser.add_argument('--window', type=float, default=10.0,
                        help='seconds of frames the live figures cover (default 10)')
    parser.add_argument('--status-period', type=float, default=10.0,
                        help='events view: a status line every so many seconds (0: none)')
    parser.add_argument('--model', default='',
                        help='model name or YAML, to name the stages plans cut after')
    args, ros = parser.parse_known_args(argv)
    if args.frames < 0 or args.timeout < 0 or not args.window > 0 or args.status_period < 0:
        parser.error('--frames, --timeout and --status-period must be >= 0, --window > 0')
    view = args.view or ('live' if sys.stdout.isatty() else 'frames')
    card = None
    if args.model:
        try:
            card = load_card(resolve_model_path(args.model))
        except ModelError as exc:
            parser.error(str(exc))
    try:
        dds_profile.apply()  # before rclpy.init: Fast DDS reads it then
    except ValueError as exc:
        parser.error(str(exc))
    # SIGINT ends the monitor even when it was started with SIGINT ignored
    # (a background job, or the demo's child).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    rclpy.init(args=[sys.argv[0], *ros] if ros else None)
    node = Monitor(view=view, quiet=args.quiet, card=card, window_s=args.window,
                   status_period_s=args.status_period, keep_all=bool(args.json))
    end = time.monotonic() + args.timeout if args.timeout > 0 else float('inf')
    next_tick = time.monotonic()
    try:
        while rclpy.ok() and time.monotonic() < end and \
                not (0 < args.frames <= len(node.summary.records)):
            rclpy.spin_once(node, timeout_sec=0.1)
            if time.monotonic() >= next_tick:
                next_tick += 1.0
                node.tick()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except _rclpy.RCLError:
        # A signal shut the context down between rclpy.ok() and the wait.
        if rclpy.ok():
            raise
    finally:
        figures = node.summary.figures()
        print(f'[edgent-monitor] {summary_text(figures)}', flush=True)
        if args.json:
            with open(args.json, 'w') as f:
                json.dump({'figures': figures,
                           'frames': [asdict(r) for r in node.summary.records],
                           'plans': [asdict(p) for p in node.plans],
                           'estimates': list(node.estimates)}, f, indent=1)
        node.destroy_node()
        rclpy.try_shutdown()
    return 0 if figures.get('frames') else 1


if __name__ == '__main__':
    raise SystemExit(main())

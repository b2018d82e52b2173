"""edgent-monitor: prints a line per answered frame and a summary, then exits.

Subscribes ``result`` (InferenceResult), ``bandwidth`` and ``plan`` (each
new plan is printed with where it cuts the network, named from the model
card of ``--model``); after ``frames``
results (0 = until Ctrl-C) prints the summary (frames, deadline hit rate,
accuracy, latency median and p95) and exits. ``--json FILE`` also writes the
figures and every frame.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict

import rclpy
from rclpy.executors import ExternalShutdownException

from edgent_ros import dds_profile
from edgent_ros.card import ModelCard, ModelError, load_card, resolve_model_path
from edgent_ros.nodes.runner import GuardedNode
from edgent_ros.qos import LATCHED_QOS
from edgent_ros.report import FrameRecord, Summary, cut_text, frame_line, summary_text
from edgent_ros_interfaces.msg import BandwidthEstimate, InferenceResult, Plan


class Monitor(GuardedNode):

    def __init__(self, quiet: bool = False, card: ModelCard | None = None,
                 **kwargs: object) -> None:
        super().__init__('monitor', **kwargs)
        self.quiet = quiet
        self.card = card
        self.plan_id = -1
        self.summary = Summary()
        self.bandwidth_kbps = float('nan')
        self.create_subscription(InferenceResult, 'result', self.on_result, 50)
        self.create_subscription(BandwidthEstimate, 'bandwidth', self.on_bandwidth, LATCHED_QOS)
        self.create_subscription(Plan, 'plan', self.on_plan, LATCHED_QOS)

    def on_plan(self, msg: Plan) -> None:
        if msg.plan_id == self.plan_id:
            return
        self.plan_id = msg.plan_id
        if not self.quiet:
            print(f'plan {msg.plan_id} at {msg.bandwidth_kbps:.0f} kbps: '
                  f'{cut_text(self.card, msg.exit_point, msg.partition_point)}; predicted '
                  f'{msg.predicted_latency_ms:.1f} ms', flush=True)

    def on_bandwidth(self, msg: BandwidthEstimate) -> None:
        self.bandwidth_kbps = float(msg.bandwidth_kbps)

    def on_result(self, msg: InferenceResult) -> None:
        record = FrameRecord(
            seq=msg.frame_seq, source=msg.source_id, exit_point=msg.exit_point,
            partition=msg.partition_point, predicted_ms=msg.predicted_latency_ms,
            latency_ms=msg.latency_ms, deadline_met=msg.deadline_met,
            correct=None if msg.label < 0 else msg.label == msg.class_id,
            bandwidth_kbps=self.bandwidth_kbps, fallback=msg.fallback, received_s=time.time(),
            remote=msg.edge_ms > 0, skipped=msg.skipped, device_ms=msg.device_ms)
        self.summary.add(record)
        if not self.quiet:
            print(frame_line(record), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='edgent-monitor', description=__doc__.splitlines()[0])
    parser.add_argument('--frames', type=int, default=0, help='exit after this many results')
    parser.add_argument('--timeout', type=float, default=0.0, help='give up after seconds')
    parser.add_argument('--json', default='', help='write figures and frames here')
    parser.add_argument('--quiet', action='store_true', help='summary only')
    parser.add_argument('--model', default='',
                        help='model name or YAML, to name the stages plans cut after')
    args, ros = parser.parse_known_args(argv)
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
    rclpy.init(args=[sys.argv[0], *ros] if ros else None)
    node = Monitor(quiet=args.quiet, card=card)
    end = time.monotonic() + args.timeout if args.timeout > 0 else float('inf')
    try:
        while rclpy.ok() and time.monotonic() < end and \
                not (0 < args.frames <= len(node.summary.records)):
            rclpy.spin_once(node, timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        figures = node.summary.figures()
        print(f'[edgent-monitor] {summary_text(figures)}', flush=True)
        if args.json:
            with open(args.json, 'w') as f:
                json.dump({'figures': figures,
                           'frames': [asdict(r) for r in node.summary.records]}, f, indent=1)
        node.destroy_node()
        rclpy.try_shutdown()
    return 0 if figures.get('frames') else 1


if __name__ == '__main__':
    raise SystemExit(main())

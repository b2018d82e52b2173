"""Collects what a fleet run produced, for bench_fleet.py: every robot's
results, the edges' load. Runs inside the testbed (an edge's namespace), as
an rclpy process; writes one JSON file when it ends (SIGINT or --seconds).

    python bench/fleet_collect.py --robots 8 --edges 1 --seconds 60 --out run.json
"""

from __future__ import annotations

import argparse
import json
import signal
import time

import rclpy
from rclpy.node import Node

from edgent_ros.qos import LATCHED_QOS
from edgent_ros_interfaces.msg import EdgeLoad, InferenceResult


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--robots', type=int, required=True)
    parser.add_argument('--edges', type=int, default=1)
    parser.add_argument('--seconds', type=float, default=60.0)
    parser.add_argument('--out', required=True)
    args = parser.parse_args()
    rclpy.init()
    node = Node('fleet_collect')
    results: list[dict] = []
    loads: list[dict] = []

    def on_result(robot: int, r: InferenceResult) -> None:
        results.append({
            't': time.monotonic(), 'robot': robot, 'seq': int(r.frame_seq),
            'met': bool(r.deadline_met), 'skipped': bool(r.skipped),
            'fallback': bool(r.fallback), 'label': int(r.label), 'class_id': int(r.class_id),
            'latency_ms': float(r.latency_ms), 'exit': int(r.exit_point),
            'partition': int(r.partition_point), 'edge_ms': float(r.edge_ms),
            'plan_id': int(r.plan_id)})

    def on_load(edge: int, m: EdgeLoad) -> None:
        loads.append({'t': time.monotonic(), 'edge': edge, 'queue': int(m.queue_length),
                      'busy': float(m.busy_share), 'wait_ms': float(m.wait_ms),
                      'served_per_s': float(m.served_per_s), 'late_per_s': float(m.late_per_s),
                      'batches_per_s': float(m.batches_per_s),
                      'devices': int(m.devices_served)})

    for i in range(args.robots):
        node.create_subscription(InferenceResult, f'/robot{i}/result',
                                 lambda r, i=i: on_result(i, r), 200)
    for j in range(args.edges):
        node.create_subscription(EdgeLoad, f'/edge{j}/edge_load',
                                 lambda m, j=j: on_load(j, m), LATCHED_QOS)
    stop = {'now': False}
    signal.signal(signal.SIGINT, lambda *_: stop.update(now=True))
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    end = time.monotonic() + args.seconds
    print('collecting', flush=True)
    while not stop['now'] and time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.1)
    with open(args.out, 'w') as f:
        json.dump({'results': results, 'loads': loads, 'end': time.monotonic()}, f)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    raise SystemExit(main())

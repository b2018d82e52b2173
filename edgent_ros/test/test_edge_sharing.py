"""A device node facing a shared edge, over DDS: each tensor says how long the
edge has to answer it, and a frame the edge did not run (late, busy) is
answered on the device at once instead of after the reply timeout."""

from __future__ import annotations

import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node

from edgent_ros import model as m
from edgent_ros.qos import LATCHED_QOS, TENSOR_QOS
from edgent_ros_interfaces.msg import EdgeReply, InferenceResult, Plan, Tensor

from .conftest import spin_until

pytestmark = [pytest.mark.ros, pytest.mark.slow]

NS = '/shr'
CARD = m.load_card(m.resolve_model_path(m.DEFAULT_MODEL))
DEADLINE_MS = 20_000.0


def test_a_frame_the_edge_did_not_run_is_answered_on_the_device_at_once(
        rclpy_context: object, processes: object) -> None:
    node = Node('sharing_test', context=rclpy_context)
    executor = SingleThreadedExecutor(context=rclpy_context)
    executor.add_node(node)
    results: list[InferenceResult] = []
    statuses: list[dict[str, str]] = []
    replies = node.create_publisher(EdgeReply, f'{NS}/reply', TENSOR_QOS)
    # A loaded "edge": it answers the first tensor late, the second busy, the
    # third with a status no edge sends, the rest not at all.
    answers = [EdgeReply.STATUS_LATE, EdgeReply.STATUS_BUSY, 200]
    tensors: list[Tensor] = []

    def on_tensor(t: Tensor) -> None:
        tensors.append(t)
        if answers:
            replies.publish(EdgeReply(frame_seq=t.frame_seq, source_id=t.source_id,
                                      status=answers.pop(0), edge_total_ms=0.2))

    node.create_subscription(Tensor, f'{NS}/tensor', on_tensor, TENSOR_QOS)
    node.create_subscription(InferenceResult, f'{NS}/result', results.append, 100)
    node.create_subscription(DiagnosticArray, '/diagnostics', lambda msg: statuses.extend(
        {kv.key: kv.value for kv in s.values} for s in msg.status if f'{NS}/device' in s.name),
        10)
    plans = node.create_publisher(Plan, f'{NS}/plan', LATCHED_QOS)
    # A remote plan with a 20 s deadline: only the reply timeout (5 s) would
    # bound the wait for a reply that says nothing.
    plans.publish(Plan(plan_id=1, exit_point=5, num_exits=5, partition_point=8,
                       num_layers=CARD.exit(5).num_layers, latency_requirement_ms=DEADLINE_MS,
                       predicted_latency_ms=100.0, predicted_device_ms=20.0,
                       predicted_upload_ms=30.0, predicted_download_ms=1.0,
                       deadline_met=True))
    processes('device_node', '-r', f'__ns:={NS}', '-r', '__node:=device')
    processes('camera_node', '-r', f'__ns:={NS}', '-p', 'rate_hz:=2.0')
    assert spin_until(executor, lambda: len(results) >= 3, 60), results
    # The edge is told the time it has: the deadline less upload and download.
    first = tensors[0]
    assert 0 < first.deadline_ms < DEADLINE_MS - 31.0
    late, busy, odd = results[:3]
    for r in (late, busy):  # answered on the device within a frame's compute, not 5 s
        assert r.fallback and r.class_id >= 0 and r.latency_ms < 2000.0, r
    assert odd.fallback and odd.latency_ms < 2000.0

    def counted() -> bool:
        return bool(statuses) and statuses[-1].get('edge_late') == '1' and \
            statuses[-1].get('edge_busy') == '1' and \
            statuses[-1].get('malformed_replies') == '1'
    assert spin_until(executor, counted, 10), statuses[-1:]
    executor.shutdown()
    node.destroy_node()

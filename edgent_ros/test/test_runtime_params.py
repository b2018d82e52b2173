"""Every parameter of the device node and the bandwidth monitor, set at run time
on a running process: it takes effect (seen in what the node does), or it is
read-only and the change is refused with the reason."""

from __future__ import annotations

import time

import pytest
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient

from edgent_ros import model as m
from edgent_ros.qos import LATCHED_QOS, TENSOR_QOS
from edgent_ros_interfaces.msg import EdgeReply, InferenceResult, Plan, Tensor

from .conftest import spin_until

pytestmark = [pytest.mark.ros, pytest.mark.slow]

NS = '/rtp'
CARD = m.load_card(m.resolve_model_path(m.DEFAULT_MODEL))


def plan(plan_id: int, partition: int, deadline_ms: float) -> Plan:
    return Plan(plan_id=plan_id, exit_point=5, num_exits=5, partition_point=partition,
                num_layers=CARD.exit(5).num_layers, latency_requirement_ms=deadline_ms,
                predicted_latency_ms=10.0, deadline_met=True)


def test_each_parameter_applies_at_run_time_or_is_refused(rclpy_context: object,
                                                           processes: object) -> None:
    node = Node('params_test', context=rclpy_context)
    executor = SingleThreadedExecutor(context=rclpy_context)
    executor.add_node(node)
    results: list[InferenceResult] = []
    tensors: list[tuple[float, Tensor]] = []  # an "edge" that answers only when told
    node.create_subscription(InferenceResult, f'{NS}/result', results.append, 100)
    node.create_subscription(Tensor, f'{NS}/tensor', lambda t: tensors.append(
        (time.monotonic(), t)), TENSOR_QOS)
    replies = node.create_publisher(EdgeReply, f'{NS}/reply', TENSOR_QOS)
    plans = node.create_publisher(Plan, f'{NS}/plan', LATCHED_QOS)
    processes('device_node', '-r', f'__ns:={NS}', '-r', '__node:=device')
    processes('bandwidth_monitor', '-r', f'__ns:={NS}')
    device = AsyncParameterClient(node, f'{NS}/device')
    monitor = AsyncParameterClient(node, f'{NS}/bandwidth_monitor')
    assert device.wait_for_services(timeout_sec=60.0)
    assert monitor.wait_for_services(timeout_sec=60.0)

    def set_one(client: AsyncParameterClient, name: str, value: object) -> object:
        future = client.set_parameters([Parameter(name, value=value)])
        executor.spin_until_future_complete(future, timeout_sec=20.0)
        return future.result().results[0]

    # Read-only: refused, with the reason.
    for client, name, value in [
            (device, 'model', 'another'), (device, 'threads', 2),
            (device, 'source_id', '/elsewhere'), (device, 'emulated_slowdown', 2.0),
            (monitor, 'probe_bytes', 4096), (monitor, 'probe_rate_hz', 1.0),
            (monitor, 'probe_duty', 0.5), (monitor, 'probe_idle_s', 1.0),
            (monitor, 'window', 4), (monitor, 'min_sample_bytes', 100),
            (monitor, 'probe_timeout_s', 1.0), (monitor, 'publish_period_s', 1.0),
            (monitor, 'edges', 'auto'), (monitor, 'edge_namespace', '/e')]:
        result = set_one(client, name, value)
        assert not result.successful, name
        assert 'read-only' in result.reason, (name, result.reason)

    # top_k: device only (the default plan), 3 classes per frame, then 5.
    processes('camera_node', '-r', f'__ns:={NS}', '-p', 'rate_hz:=10.0')
    assert spin_until(executor, lambda: len(results) >= 3, 60)
    assert len(results[-1].top_k_class_ids) == 3
    assert set_one(device, 'top_k', 5).successful
    seen = len(results)
    assert spin_until(executor, lambda: len(results) >= seen + 3, 20)
    assert [len(r.top_k_class_ids) for r in results[seen + 1:]] == [5] * len(results[seen + 1:])

    # skip_late_frames: a 1 us deadline, which every frame has passed when taken
    # (1 ms was not always: a frame can be taken within a millisecond of capture).
    plans.publish(plan(2, CARD.exit(5).num_layers, 0.001))
    assert spin_until(executor, lambda: sum(r.plan_id == 2 and r.skipped for r in results) >= 3,
                      20)
    assert set_one(device, 'skip_late_frames', False).successful
    seen = len(results)
    assert spin_until(executor, lambda: len(results) >= seen + 3, 20)
    after = results[seen + 1:]
    assert after and not any(r.skipped for r in after) and all(r.class_id >= 0 for r in after)

    # reply_timeout_s: frames go to the "edge" (a 20 s deadline: only the timeout
    # bounds the wait), which does not answer; the device answers them alone.
    assert set_one(device, 'reply_timeout_s', 0.3).successful
    plans.publish(plan(3, 8, 20_000.0))
    assert spin_until(executor, lambda: any(r.plan_id == 3 for r in results), 20)
    first = next(r for r in results if r.plan_id == 3)
    assert first.fallback and 250.0 <= first.latency_ms < 1500.0  # 0.3 s, not 5 s
    # edge_retry_s: the edge is taken as down; trials go every edge_retry_s.
    assert set_one(device, 'edge_retry_s', 0.2).successful
    seen = len(tensors)
    spin_until(executor, lambda: False, 2.0)
    assert len(tensors) >= seen + 3  # a trial every 0.2 s + its 0.3 s wait
    assert set_one(device, 'edge_retry_s', 100.0).successful
    spin_until(executor, lambda: False, 1.0)  # a trial already out may still go
    seen = len(tensors)
    spin_until(executor, lambda: False, 2.0)
    assert len(tensors) == seen  # no trial for 100 s
    # A longer reply timeout, then the edge answers a trial: co-inference again,
    # and the frames it leaves unanswered wait 2 s now.
    assert set_one(device, 'reply_timeout_s', 2.0).successful
    assert set_one(device, 'edge_retry_s', 0.05).successful
    assert spin_until(executor, lambda: len(tensors) > seen, 20)
    trial = tensors[-1][1]
    replies.publish(EdgeReply(frame_seq=trial.frame_seq, source_id=trial.source_id,
                              top_k_class_ids=[1], top_k_scores=[1.0], edge_total_ms=1.0))
    seen = len(results)
    assert spin_until(executor, lambda: any(
        r.fallback and r.latency_ms >= 1800.0 for r in results[seen:]), 20)
    executor.shutdown()
    node.destroy_node()

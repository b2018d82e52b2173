"""The planner node and the bandwidth monitor as real processes over DDS."""

from __future__ import annotations

import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient

from edgent_ros.bandwidth import SOURCE_PROBE
from edgent_ros.qos import LATCHED_QOS
from edgent_ros_interfaces.msg import BandwidthEstimate, Plan

from .conftest import spin_until

pytestmark = pytest.mark.ros


@pytest.fixture
def harness(rclpy_context: object) -> object:
    node = Node('planner_test', namespace='/plan_test', context=rclpy_context)
    executor = SingleThreadedExecutor(context=rclpy_context)
    executor.add_node(node)
    yield node, executor
    executor.shutdown()
    node.destroy_node()


def set_param(node: Node, executor: object, target: str, name: str,
              value: float) -> object:
    client = AsyncParameterClient(node, target)
    assert client.wait_for_services(timeout_sec=20.0)
    future = client.set_parameters([Parameter(name, value=value)])
    executor.spin_until_future_complete(future, timeout_sec=20.0)
    return future.result().results[0]


def test_deadline_change_at_run_time_gives_a_new_plan(harness: object,
                                                      processes: object) -> None:
    node, executor = harness
    plans: list[Plan] = []
    diags: list[DiagnosticArray] = []
    node.create_subscription(Plan, 'plan', plans.append, LATCHED_QOS)
    node.create_subscription(DiagnosticArray, '/diagnostics', diags.append, 10)
    estimates = node.create_publisher(BandwidthEstimate, 'bandwidth', LATCHED_QOS)
    planner = processes('planner_node', '-r', '__ns:=/plan_test',
                        '-p', 'latency_requirement_ms:=1000',  # an integer is taken too
                        '-p', 'initial_bandwidth_kbps:=500.0')
    assert spin_until(executor, lambda: len(plans) >= 1, 30), planner
    first = plans[-1]
    assert first.deadline_met and first.latency_requirement_ms == 1000.0
    assert first.num_exits == 5 and 0 <= first.partition_point <= first.num_layers

    result = set_param(node, executor, '/plan_test/planner', 'latency_requirement_ms', 100.0)
    assert result.successful
    assert spin_until(executor, lambda: plans[-1].plan_id > first.plan_id, 20)
    tight = plans[-1]
    assert tight.latency_requirement_ms == 100.0
    assert not tight.deadline_met  # nothing meets 100 ms at 500 kbps (Table II)

    refused = set_param(node, executor, '/plan_test/planner', 'latency_requirement_ms', -5.0)
    assert not refused.successful and refused.reason
    count = len(plans)
    spin_until(executor, lambda: len(plans) > count, 1.0)
    assert plans[-1].plan_id == tight.plan_id  # kept its last good configuration

    assert set_param(node, executor, '/plan_test/planner', 'latency_requirement_ms',
                     1000.0).successful
    # At 20 kbps uploading anything takes seconds: the plan turns device-only.
    estimate = BandwidthEstimate(bandwidth_kbps=20.0, source=SOURCE_PROBE, sample_count=5)
    estimates.publish(estimate)
    assert spin_until(executor, lambda: plans[-1].bandwidth_kbps == 20.0, 20)
    assert plans[-1].deadline_met
    assert plans[-1].partition_point == plans[-1].num_layers
    assert plans[-1].upload_bytes == 0
    # Baselines for the evaluation: a mode switch at run time; a bad mode is refused.
    estimates.publish(BandwidthEstimate(bandwidth_kbps=400.0, source=SOURCE_PROBE,
                                        sample_count=5))
    assert spin_until(executor, lambda: plans[-1].bandwidth_kbps == 400.0, 20)
    assert plans[-1].partition_point == 0  # Edgent sends the input at 400 kbps (Table II)
    assert not set_param(node, executor, '/plan_test/planner', 'mode', 'cloud').successful
    assert set_param(node, executor, '/plan_test/planner', 'mode', 'device_only').successful
    assert spin_until(executor, lambda: plans[-1].partition_point == plans[-1].num_layers, 20)
    assert spin_until(executor, lambda: any(
        'planner' in s.name for d in diags for s in d.status), 10)
    assert planner.poll() is None


def test_bandwidth_monitor_measures_the_link_with_probes(harness: object,
                                                        processes: object) -> None:
    node, executor = harness
    estimates: list[BandwidthEstimate] = []
    node.create_subscription(BandwidthEstimate, '/bw_test/bandwidth', estimates.append,
                             LATCHED_QOS)
    processes('probe_echo', '-r', '__ns:=/bw_test')
    processes('bandwidth_monitor', '-r', '__ns:=/bw_test', '-p', 'probe_rate_hz:=5.0',
              '-p', 'probe_idle_s:=0.0')
    assert spin_until(executor, lambda: any(e.sample_count >= 3 for e in estimates), 30)
    last = estimates[-1]
    assert last.source == SOURCE_PROBE
    assert last.bandwidth_kbps > 1000.0  # loopback: far faster than any radio link
    assert 0.0 < last.confidence <= 1.0

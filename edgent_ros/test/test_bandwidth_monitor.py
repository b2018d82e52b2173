"""The bandwidth monitor takes the device's raw transfer reports and alone
decides what they count as (real processes over DDS)."""

from __future__ import annotations

import pytest
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.time import Time

from edgent_ros.qos import LATCHED_QOS
from edgent_ros_interfaces.msg import BandwidthEstimate, TransferReport

from .conftest import spin_until

pytestmark = pytest.mark.ros


def report(node: Node, sent_ago_s: float, nbytes: int, round_trip_ms: float, *,
           edge_ms: float = 10.0, still_out: bool = False) -> TransferReport:
    msg = TransferReport(bytes=nbytes, round_trip_ms=round_trip_ms, edge_held_ms=edge_ms,
                         still_out=still_out, expected_ms=20.0)
    sent = node.get_clock().now().nanoseconds - round(sent_ago_s * 1e9)
    msg.header.stamp = Time(nanoseconds=sent).to_msg()
    return msg


def test_transfer_reports_become_samples_by_the_monitors_own_rules(
        rclpy_context: object, processes: object) -> None:
    node = Node('bw_reports_test', context=rclpy_context)
    executor = SingleThreadedExecutor(context=rclpy_context)
    executor.add_node(node)
    estimates: dict[str, list[BandwidthEstimate]] = {'/bwr_a': [], '/bwr_b': []}
    reports = {}
    for ns, extra in (('/bwr_a', []), ('/bwr_b', ['-p', 'min_sample_bytes:=16384'])):
        node.create_subscription(BandwidthEstimate, f'{ns}/bandwidth', estimates[ns].append,
                                 LATCHED_QOS)
        reports[ns] = node.create_publisher(TransferReport, f'{ns}/link/transfers', 50)
        # Probes go nowhere (no echo), one per 100 s, lost after 0.1 s: only
        # the reports measure the link.
        processes('bandwidth_monitor', '-r', f'__ns:={ns}', '-p', 'probe_rate_hz:=0.01',
                  '-p', 'probe_timeout_s:=0.1', *extra)
    assert spin_until(executor, lambda: all(
        p.get_subscription_count() > 0 for p in reports.values()), 60)
    spin_until(executor, lambda: False, 1.0)
    # 12 500 bytes in 110 ms, 10 of them on the edge: 1000 kbps. Too small for
    # a monitor told that only 16 KB transfers measure the rate.
    for _ in range(4):
        for publisher in reports.values():
            publisher.publish(report(node, 0.11, 12_500, 110.0))
        spin_until(executor, lambda: False, 0.2)
    assert spin_until(executor, lambda: bool(estimates['/bwr_a']), 10)
    assert estimates['/bwr_a'][-1].bandwidth_kbps == pytest.approx(1000.0, rel=1e-3)
    # A transfer of less than 4 KB never measures the rate.
    reports['/bwr_a'].publish(report(node, 0.05, 1000, 50.0, edge_ms=1.0))
    # One still out for 400 ms, 20 ms expected: overdue, the link carried at
    # most 250 kbps; the estimate is capped there at once.
    reports['/bwr_a'].publish(report(node, 0.4, 12_500, 400.0, edge_ms=0.0, still_out=True))
    assert spin_until(executor, lambda: estimates['/bwr_a'][-1].upper_bound, 10)
    assert estimates['/bwr_a'][-1].bandwidth_kbps == pytest.approx(250.0, rel=1e-3)
    spin_until(executor, lambda: False, 1.0)
    assert estimates['/bwr_b'] == []
    executor.shutdown()
    node.destroy_node()

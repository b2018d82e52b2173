"""tensor_talker: publishes Tensor messages (1x64x8x8 float32) and a Plan.

The first half of the two-process message exchange (tensor_listener is the
other half). Frame k carries ``demo_tensor(seed + k)``.
"""

from __future__ import annotations

import time

import rclpy
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node

from edgent_ros import tensor_codec
from edgent_ros.demo.payload import demo_tensor
from edgent_ros.nodes.runner import init
from edgent_ros.qos import LATCHED_QOS, TENSOR_QOS
from edgent_ros_interfaces.msg import Plan, Tensor


class TensorTalker(Node):

    def __init__(self) -> None:
        super().__init__('tensor_talker')
        self.declare_parameter('rate_hz', 2.0, ParameterDescriptor(
            description='Tensors published per second.',
            floating_point_range=[FloatingPointRange(from_value=0.1, to_value=1000.0)]))
        self.declare_parameter('count', 0, ParameterDescriptor(
            description='Tensors to publish before exiting; 0 = forever.',
            integer_range=[IntegerRange(from_value=0, to_value=1_000_000)], read_only=True))
        self.declare_parameter('seed', 0, ParameterDescriptor(
            description='Frame k carries the payload of seed + k.', read_only=True))
        self.declare_parameter('wait_for_subscribers', False, ParameterDescriptor(
            description='Hold the first tensor until a subscriber has matched.',
            read_only=True))
        self.count = self.get_parameter('count').value
        self.seed = self.get_parameter('seed').value
        self.sent = 0
        self.tensor_pub = self.create_publisher(Tensor, 'tensor', TENSOR_QOS)
        self.plan_pub = self.create_publisher(Plan, 'plan', LATCHED_QOS)
        self.plan_pub.publish(self.make_plan())
        period = 1.0 / self.get_parameter('rate_hz').value
        self.timer = self.create_timer(period, self.on_timer)

    def make_plan(self) -> Plan:
        plan = Plan()
        plan.header.stamp = self.get_clock().now().to_msg()
        plan.plan_id = 1
        plan.exit_point = 5
        plan.num_exits = 5
        plan.partition_point = 3
        plan.num_layers = 22
        plan.predicted_latency_ms = 123.5
        plan.predicted_device_ms = 40.0
        plan.predicted_upload_ms = 70.0
        plan.predicted_edge_ms = 13.0
        plan.predicted_download_ms = 0.5
        plan.upload_bytes = 4 * 64 * 8 * 8
        plan.bandwidth_kbps = 500.0
        plan.latency_requirement_ms = 1000.0
        plan.deadline_met = True
        plan.expected_accuracy = 0.78
        return plan

    def on_timer(self) -> None:
        if self.get_parameter('wait_for_subscribers').value and self.sent == 0 \
                and self.tensor_pub.get_subscription_count() == 0:
            return
        msg = tensor_codec.to_msg(demo_tensor(self.seed + self.sent), name='activation')
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = 'camera'
        msg.frame_seq = self.sent
        msg.source_id = self.get_namespace()
        msg.plan_id = 1
        msg.exit_point = 5
        msg.partition_point = 3
        self.tensor_pub.publish(msg)
        self.get_logger().info(
            f'sent frame {self.sent}: {list(msg.shape)} {len(msg.data)} bytes')
        self.sent += 1

    @property
    def done(self) -> bool:
        return 0 < self.count <= self.sent


def main(args: list[str] | None = None) -> int:
    if not init(args):
        return 2
    node = TensorTalker()
    try:
        while rclpy.ok() and not node.done:
            rclpy.spin_once(node, timeout_sec=0.1)
        # Let the last reliable messages get out before the process goes.
        time.sleep(0.5)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    raise SystemExit(main())

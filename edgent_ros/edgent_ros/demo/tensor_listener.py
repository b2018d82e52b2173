"""tensor_listener: receives Tensor and Plan messages and checks them.

The second half of the two-process message exchange. With ``count`` > 0 it
exits after that many tensors; its exit status is 0 only if every tensor was
bit-exact (against ``demo_tensor(seed + frame_seq)``) and a Plan arrived.
"""

from __future__ import annotations

import time

import numpy as np
import rclpy
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node

from edgent_ros import tensor_codec
from edgent_ros.demo.payload import demo_tensor
from edgent_ros.nodes.runner import init
from edgent_ros.qos import LATCHED_QOS, TENSOR_QOS
from edgent_ros_interfaces.msg import Plan, Tensor


class TensorListener(Node):

    def __init__(self) -> None:
        super().__init__('tensor_listener')
        self.declare_parameter('count', 0, ParameterDescriptor(
            description='Tensors to receive before exiting; 0 = forever.',
            integer_range=[IntegerRange(from_value=0, to_value=1_000_000)], read_only=True))
        self.declare_parameter('seed', 0, ParameterDescriptor(
            description='Seed the talker uses; tensors are checked against it.',
            read_only=True))
        self.declare_parameter('timeout_s', 0.0, ParameterDescriptor(
            description='Give up after this many seconds; 0 = never.',
            floating_point_range=[FloatingPointRange(from_value=0.0, to_value=3600.0)],
            read_only=True))
        self.count = self.get_parameter('count').value
        self.seed = self.get_parameter('seed').value
        self.received = 0
        self.exact = 0
        self.plan: Plan | None = None
        self.create_subscription(Tensor, 'tensor', self.on_tensor, TENSOR_QOS)
        self.create_subscription(Plan, 'plan', self.on_plan, LATCHED_QOS)

    def on_plan(self, plan: Plan) -> None:
        self.plan = plan
        self.get_logger().info(
            f'plan {plan.plan_id}: exit {plan.exit_point}/{plan.num_exits}, partition '
            f'{plan.partition_point}/{plan.num_layers}, predicted '
            f'{plan.predicted_latency_ms:.1f} ms at {plan.bandwidth_kbps:.0f} kbps')

    def on_tensor(self, msg: Tensor) -> None:
        self.received += 1
        try:
            array = tensor_codec.from_msg(msg)
        except tensor_codec.TensorCodecError as exc:
            self.get_logger().error(f'frame {msg.frame_seq}: malformed tensor: {exc}')
            return
        expected = demo_tensor(self.seed + msg.frame_seq)
        exact = array.shape == expected.shape and array.dtype == expected.dtype \
            and array.tobytes() == expected.tobytes()
        self.exact += int(exact)
        self.get_logger().info(
            f'frame {msg.frame_seq}: {list(array.shape)} {array.dtype} from '
            f"'{msg.source_id}', {'bit-exact' if exact else 'DIFFERENT'}, "
            f'mean {float(np.mean(array)):+.4f}')

    @property
    def done(self) -> bool:
        return 0 < self.count <= self.received and self.plan is not None

    @property
    def success(self) -> bool:
        return self.done and self.exact == self.received


def main(args: list[str] | None = None) -> int:
    if not init(args):
        return 2
    node = TensorListener()
    timeout = node.get_parameter('timeout_s').value
    deadline = time.monotonic() + timeout if timeout > 0 else float('inf')
    try:
        while rclpy.ok() and not node.done and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        summary = (f'received {node.received} tensors, {node.exact} bit-exact, '
                   f"plan {'received' if node.plan is not None else 'MISSING'}")
        node.get_logger().info(summary)
        ok = node.success or node.count == 0
        node.destroy_node()
        rclpy.try_shutdown()
    return 0 if ok else 1


if __name__ == '__main__':
    raise SystemExit(main())

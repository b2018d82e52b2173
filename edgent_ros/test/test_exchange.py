"""Two processes over real DDS: a Tensor and a Plan arrive bit-exact."""

from __future__ import annotations

import subprocess
import time

import pytest
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node

from edgent_ros import tensor_codec
from edgent_ros.demo.payload import demo_tensor
from edgent_ros.qos import LATCHED_QOS, TENSOR_QOS
from edgent_ros_interfaces.msg import Plan, Tensor

from .conftest import executable

pytestmark = pytest.mark.ros


def test_tensor_and_plan_cross_processes_bit_exact(rclpy_context: object) -> None:
    seed, count = 11, 3
    node = Node('exchange_test_listener', namespace='/exchange_test', context=rclpy_context)
    executor = SingleThreadedExecutor(context=rclpy_context)
    executor.add_node(node)
    tensors: list[Tensor] = []
    plans: list[Plan] = []
    node.create_subscription(Tensor, 'tensor', tensors.append, TENSOR_QOS)
    node.create_subscription(Plan, 'plan', plans.append, LATCHED_QOS)
    talker = subprocess.Popen(
        [executable('tensor_talker'), '--ros-args', '-r', '__ns:=/exchange_test',
         '-p', f'count:={count}', '-p', f'seed:={seed}', '-p', 'rate_hz:=10.0',
         '-p', 'wait_for_subscribers:=true'],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while (len(tensors) < count or not plans) and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.1)
    finally:
        talker.terminate()
        output = talker.communicate(timeout=10)[0]
        executor.shutdown()
        node.destroy_node()
    assert len(tensors) == count, output
    assert len(plans) == 1, output
    for msg in tensors:
        array = tensor_codec.from_msg(msg)
        expected = demo_tensor(seed + msg.frame_seq)
        assert array.shape == (1, 64, 8, 8)
        assert array.dtype == expected.dtype
        assert array.tobytes() == expected.tobytes()  # bit-exact
        assert msg.name == 'activation'
        assert (msg.exit_point, msg.partition_point, msg.plan_id) == (5, 3, 1)
        assert msg.source_id == '/exchange_test'
    assert sorted(m.frame_seq for m in tensors) == list(range(count))
    plan = plans[0]
    assert (plan.plan_id, plan.exit_point, plan.num_exits) == (1, 5, 5)
    assert (plan.partition_point, plan.num_layers, plan.upload_bytes) == (3, 22, 16384)
    assert plan.predicted_latency_ms == pytest.approx(123.5)
    assert plan.deadline_met


def test_demo_command_reports_bit_exact_exchange() -> None:
    result = subprocess.run([executable('edgent-exchange-demo'), '--count', '3', '--rate', '10'],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'two-process exchange: all bit-exact' in result.stdout
    assert 'received 3 tensors, 3 bit-exact, plan received' in result.stderr + result.stdout

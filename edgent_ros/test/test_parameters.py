"""Honest parameters: every parameter of every node, set at run time on a running
process, is either applied (its effect is observed) or refused with a reason."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from rclpy.node import Node
from rclpy.parameter import Parameter, parameter_value_to_python
from rclpy.parameter_client import AsyncParameterClient

from edgent_ros import tensor_codec
from edgent_ros.frames import dataset_frames
from edgent_ros.qos import TENSOR_QOS
from edgent_ros_interfaces.msg import EdgeReply, FrameLabel, Tensor

from .conftest import spin_until

pytestmark = [pytest.mark.ros, pytest.mark.slow]

# Declared by rclpy itself, and applied by it at run time.
RCLPY_OWN = {'use_sim_time', 'start_type_description_service'}


def wait(executor: object, future: object, timeout: float = 20.0) -> object:
    assert spin_until(executor, future.done, timeout), 'no answer from the parameter service'
    return future.result()


def another_value(value: object) -> Parameter:
    """A value of the same type that differs from ``value``."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value * 1.5 + 0.5
    if isinstance(value, str):
        return value + '_changed'
    raise AssertionError(f'unexpected parameter value {value!r}')


def check_every_parameter(node: Node, executor: object, target: str,
                          effects: dict[str, Callable[[AsyncParameterClient], None]]) -> None:
    """Every parameter of ``target``: read-only ones refuse a new value with a
    reason; every other one has an effect check in ``effects`` (which sets it
    and observes what changed)."""
    client = AsyncParameterClient(node, target)
    assert client.wait_for_services(30.0), f'{target} has no parameter services'
    names = list(wait(executor, client.list_parameters()).result.names)
    described = wait(executor, client.describe_parameters(names)).descriptors
    values = wait(executor, client.get_parameters(names)).values
    dynamic = []
    for descriptor, value in zip(described, values, strict=True):
        name = descriptor.name
        if name in RCLPY_OWN:
            continue
        if descriptor.read_only:
            new = Parameter(name, value=another_value(parameter_value_to_python(value)))
            result = wait(executor, client.set_parameters([new])).results[0]
            assert not result.successful, f'{target}: read-only {name} accepted a new value'
            assert result.reason, f'{target}: {name} refused without a reason'
        else:
            dynamic.append(name)
    assert sorted(dynamic) == sorted(effects), \
        f'{target}: parameters settable at run time {sorted(dynamic)}, with effects tested ' \
        f'{sorted(effects)}'
    for name in dynamic:
        effects[name](client)


def set_ok(executor: object, client: AsyncParameterClient, name: str, value: object) -> None:
    result = wait(executor, client.set_parameters([Parameter(name, value=value)])).results[0]
    assert result.successful, f'{name}:={value!r} refused: {result.reason}'


def set_refused(executor: object, client: AsyncParameterClient, name: str,
                value: object) -> str:
    result = wait(executor, client.set_parameters([Parameter(name, value=value)])).results[0]
    assert not result.successful, f'{name}:={value!r} accepted'
    assert result.reason
    return result.reason


def test_camera_parameters(harness: object, processes: object) -> None:
    node, executor = harness
    labels: list[FrameLabel] = []
    node.create_subscription(FrameLabel, '/pc/labels', labels.append, 50)
    processes('camera_node', '-r', '__ns:=/pc', '-p', 'rate_hz:=20.0')
    frames, _ = dataset_frames('digits')
    truth = [label for _, label in frames]

    def next_index(client: AsyncParameterClient) -> None:
        assert spin_until(executor, lambda: len(labels) >= 3, 30)
        # A run of three labels found once in the split: the replay jumps there.
        start = next(i for i in range(100, len(truth) - 3)
                     if sum(truth[j:j + 3] == truth[i:i + 3] for j in range(len(truth) - 3))
                     == 1)
        set_ok(executor, client, 'next_index', start)
        labels.clear()
        assert spin_until(executor, lambda: len(labels) >= 8, 30)
        seen = [m.label for m in labels]
        assert any(seen[k:k + 3] == truth[start:start + 3] for k in range(len(seen) - 2)), \
            (seen, truth[start:start + 3])
        assert 'next_index must be' in set_refused(executor, client, 'next_index', len(truth))

    check_every_parameter(node, executor, '/pc/camera', {'next_index': next_index})


def test_edge_parameters(harness: object, processes: object) -> None:
    node, executor = harness
    replies: list[EdgeReply] = []
    node.create_subscription(EdgeReply, '/pe/reply', replies.append, TENSOR_QOS)
    tensors = node.create_publisher(Tensor, '/pe/tensor', TENSOR_QOS)
    processes('edge_node', '-r', '__ns:=/pe', '-r', '__node:=edge')
    assert spin_until(executor, lambda: tensors.get_subscription_count() > 0, 60)
    frame = np.random.default_rng(0).random((1, 3, 32, 32), dtype=np.float32)

    def ask(seq: int) -> EdgeReply:
        msg = tensor_codec.to_msg(frame, name='activation')
        msg.frame_seq = seq
        msg.source_id = '/pe_test'
        msg.exit_point = 5
        msg.partition_point = 0
        tensors.publish(msg)
        assert spin_until(executor, lambda: any(r.frame_seq == seq for r in replies), 30)
        return next(r for r in replies if r.frame_seq == seq)

    def top_k(client: AsyncParameterClient) -> None:
        assert len(ask(1).top_k_class_ids) == 3
        set_ok(executor, client, 'top_k', 5)
        assert len(ask(2).top_k_class_ids) == 5
        set_refused(executor, client, 'top_k', 0)  # below the declared range

    check_every_parameter(node, executor, '/pe/edge', {'top_k': top_k})


def test_probe_echo_has_no_parameter_to_lie_about(harness: object, processes: object) -> None:
    node, executor = harness
    processes('probe_echo', '-r', '__ns:=/pp')
    check_every_parameter(node, executor, '/pp/probe_echo', {})

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
    for name in effects:  # in the order given: some effects measure what others set
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

    def send(seq: int, source: str = '/pe_test', deadline_ms: float = 0.0) -> None:
        msg = tensor_codec.to_msg(frame, name='activation')
        msg.frame_seq = seq
        msg.source_id = source
        msg.exit_point = 5
        msg.partition_point = 0
        msg.deadline_ms = deadline_ms
        tensors.publish(msg)

    def reply_to(seq: int, timeout: float = 30.0) -> EdgeReply | None:
        if not spin_until(executor, lambda: any(r.frame_seq == seq for r in replies), timeout):
            return None
        return next(r for r in replies if r.frame_seq == seq)

    def ask(seq: int, **kwargs: object) -> EdgeReply:
        send(seq, **kwargs)
        reply = reply_to(seq)
        assert reply is not None, f'no reply to tensor {seq}'
        return reply

    def top_k(client: AsyncParameterClient) -> None:
        assert len(ask(1).top_k_class_ids) == 3
        set_ok(executor, client, 'top_k', 5)
        assert len(ask(2).top_k_class_ids) == 5
        set_refused(executor, client, 'top_k', 0)  # below the declared range

    def allowed_sources(client: AsyncParameterClient) -> None:
        set_ok(executor, client, 'allowed_sources', '/robot1, /robot2')
        send(10, source='/pe_test')
        assert reply_to(10, timeout=1.5) is None  # not allowed: dropped unanswered
        assert ask(11, source='/robot2').status == EdgeReply.STATUS_OK
        assert 'at most' in set_refused(executor, client, 'allowed_sources',
                                        ','.join(f'/r{i}' for i in range(40)))
        set_ok(executor, client, 'allowed_sources', '')
        assert ask(12).status == EdgeReply.STATUS_OK

    def rate_limit_hz(client: AsyncParameterClient) -> None:
        set_ok(executor, client, 'rate_limit_hz', 0.5)  # a burst of one, then one in 2 s
        for seq in range(20, 26):
            send(seq, source='/pe_rate')
            spin_until(executor, lambda: False, 0.05)
        spin_until(executor, lambda: False, 0.5)
        assert len([r for r in replies if 20 <= r.frame_seq < 26]) == 1
        set_ok(executor, client, 'rate_limit_hz', 0.0)
        assert ask(27, source='/pe_rate').status == EdgeReply.STATUS_OK

    def service(client: AsyncParameterClient) -> None:
        set_ok(executor, client, 'service', 'fifo')  # computes whatever its deadline
        assert ask(30, deadline_ms=0.001).status == EdgeReply.STATUS_OK
        set_ok(executor, client, 'service', 'edf')  # out of reach: answered late
        late = ask(31, deadline_ms=0.001)
        assert late.status == EdgeReply.STATUS_LATE and not late.top_k_class_ids
        assert ask(32, deadline_ms=-1.0).status == EdgeReply.STATUS_LATE
        set_refused(executor, client, 'service', 'lifo')

    def batching(client: AsyncParameterClient) -> None:
        # A window long enough that three tensors sent together meet in it.
        set_ok(executor, client, 'batch_window_ms', 400.0)
        set_ok(executor, client, 'max_batch', 8)
        for seq, source in zip((40, 41, 42), ('/b1', '/b2', '/b3'), strict=True):
            send(seq, source=source)
        assert all(reply_to(s) is not None for s in (40, 41, 42))
        assert {r.batch_size for r in replies if 40 <= r.frame_seq <= 42} == {3}, \
            [(r.frame_seq, r.batch_size, r.edge_queue_ms) for r in replies]
        set_ok(executor, client, 'max_batch', 1)
        for seq, source in zip((43, 44), ('/b1', '/b2'), strict=True):
            send(seq, source=source)
        assert all(reply_to(s) is not None for s in (43, 44))
        assert {r.batch_size for r in replies if r.frame_seq in (43, 44)} == {1}
        set_refused(executor, client, 'max_batch', 0)

    def queue_per_source(client: AsyncParameterClient) -> None:
        # The batch window holds the first tensor: the second finds the queue full.
        set_ok(executor, client, 'max_batch', 8)
        set_ok(executor, client, 'batch_window_ms', 400.0)
        set_ok(executor, client, 'queue_per_source', 1)
        send(50, source='/q')
        send(51, source='/q')
        assert reply_to(51).status == EdgeReply.STATUS_BUSY
        assert reply_to(50).status == EdgeReply.STATUS_OK
        set_ok(executor, client, 'queue_per_source', 4)
        send(52, source='/q')
        send(53, source='/q')
        assert {reply_to(52).status, reply_to(53).status} == {EdgeReply.STATUS_OK}
        set_ok(executor, client, 'batch_window_ms', 0.0)

    # max_batch first: the edge batches a size only until it is measured not
    # to pay, and the others' tensors would measure it. batch_window_ms is
    # tested with it.
    check_every_parameter(node, executor, '/pe/edge', {
        'max_batch': batching, 'batch_window_ms': lambda _: None, 'top_k': top_k,
        'allowed_sources': allowed_sources, 'rate_limit_hz': rate_limit_hz,
        'service': service, 'queue_per_source': queue_per_source})


def test_probe_echo_has_no_parameter_to_lie_about(harness: object, processes: object) -> None:
    node, executor = harness
    processes('probe_echo', '-r', '__ns:=/pp')
    check_every_parameter(node, executor, '/pp/probe_echo', {})

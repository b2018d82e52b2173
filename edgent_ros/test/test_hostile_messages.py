"""Messages with every field at its extremes, against every decoder the nodes
run on what arrives: each either decodes or is refused with its own error,
never any other exception (issue 15, "one Tensor kills the edge node")."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sensor_msgs.msg import Image

from edgent_ros import device_policy as dp
from edgent_ros import image_codec
from edgent_ros import tensor_codec as tc
from edgent_ros.inference import ActivationError, top_k
from edgent_ros_interfaces.msg import Tensor

U32 = st.one_of(st.sampled_from([0, 1, 2, 3, 4, 2**31 - 1, 2**31, 2**32 - 1]),
                st.integers(0, 2**32 - 1))
U64 = st.one_of(st.sampled_from([0, 1, 4, 8, 2**31, 2**32, 2**62, 2**63, 2**63 + 4,
                                 2**64 - 4, 2**64 - 1]), st.integers(0, 2**64 - 1))
I32 = st.one_of(st.sampled_from([-2**31, -1, 0, 1, 9, 11, 12, 2**31 - 1]),
                st.integers(-2**31, 2**31 - 1))
F32 = st.one_of(st.sampled_from([0.0, -0.0, 1.0, -1.0, math.nan, math.inf, -math.inf,
                                 3.4e38, -3.4e38, 1e-45]),
                st.floats(width=32, allow_nan=True, allow_infinity=True))


@st.composite
def tensors(draw: st.DrawFn) -> Tensor:
    rank = draw(st.integers(0, 10))
    msg = Tensor()
    msg.shape = draw(st.lists(U32, min_size=rank, max_size=rank))
    msg.strides = draw(st.lists(U64, min_size=draw(st.sampled_from([rank, 0, rank + 1])),
                                max_size=rank + 1))[:rank + 1]
    msg.data_type = draw(I32)
    msg.quantization_scale = draw(F32)
    msg.quantization_zero_point = draw(I32)
    msg.data = bytes(draw(st.integers(0, 256)))
    return msg


@settings(max_examples=600, deadline=None)
@given(tensors())
def test_any_tensor_decodes_or_is_refused_with_its_reason(msg: Tensor) -> None:
    try:
        array = tc.from_msg(msg)
    except tc.TensorCodecError as exc:
        assert str(exc)
    else:
        assert isinstance(array, np.ndarray)


def tensor_1x4(**fields: object) -> Tensor:
    msg = tc.to_msg(np.ones((1, 4), np.float32))
    for name, value in fields.items():
        setattr(msg, name, value)
    return msg


@pytest.mark.parametrize('stride', [2**63, 2**63 + 4, 2**64 - 4, (1 << 30) + 4])
def test_a_huge_stride_on_a_size_one_dimension_is_refused(stride: int) -> None:
    with pytest.raises(tc.TensorCodecError, match='over the maximum'):
        tc.from_msg(tensor_1x4(strides=[stride, 4]))


@pytest.mark.parametrize('scale', [math.nan, math.inf, -math.inf, -1.0])
def test_a_meaningless_quantization_scale_is_refused(scale: float) -> None:
    with pytest.raises(tc.TensorCodecError, match='quantization_scale must be'):
        tc.from_msg(tensor_1x4(quantization_scale=scale))


def test_a_float_tensor_cannot_be_quantized_but_an_integer_one_can() -> None:
    with pytest.raises(tc.TensorCodecError, match='only integer tensors are quantized'):
        tc.from_msg(tensor_1x4(quantization_scale=0.5))
    q = tc.to_msg(np.ones((1, 4), np.uint8), quantization=tc.Quantization(0.5, 3))
    assert tc.from_msg(q).dtype == np.uint8


def test_logits_that_overflowed_give_no_answer() -> None:
    with pytest.raises(ActivationError, match='not finite'):
        top_k(torch.tensor([1.0, math.inf, 0.0]), 2)
    with pytest.raises(ActivationError):
        top_k(torch.tensor([math.nan, 0.0]), 1)
    assert top_k(torch.tensor([0.0, 3.0e38 / 1e30, 1.0]), 1).class_ids == [1]


@settings(max_examples=400, deadline=None)
@given(st.lists(I32, max_size=6), st.lists(F32, max_size=6), F32)
def test_any_reply_is_taken_or_refused_with_its_reason(ids: list[int], scores: list[float],
                                                       edge_ms: float) -> None:
    why = dp.reply_problem(ids, scores, edge_ms, 10)
    if why is None:
        assert len(ids) == len(scores) > 0 and all(0 <= c < 10 for c in ids)
        assert all(0.0 <= s <= 1.0 for s in scores) and math.isfinite(edge_ms)


@pytest.mark.parametrize('ids, scores, edge_ms, reason', [
    ([], [], 1.0, 'no classes'),
    ([1, 2], [0.5], 1.0, '2 class ids but 1 scores'),
    ([10], [0.5], 1.0, 'outside 0..9'),
    ([-1], [0.5], 1.0, 'outside 0..9'),
    ([1], [math.nan], 1.0, 'not all probabilities'),
    ([1], [1.5], 1.0, 'not all probabilities'),
    ([1], [0.5], math.inf, 'edge time'),
    ([1], [0.5], -3.0, 'edge time'),
])
def test_a_bad_reply_is_refused_with_the_reason(ids: list[int], scores: list[float],
                                                edge_ms: float, reason: str) -> None:
    assert reason in dp.reply_problem(ids, scores, edge_ms, 10)


@st.composite
def images(draw: st.DrawFn) -> Image:
    msg = Image()
    msg.height, msg.width, msg.step = draw(U32), draw(U32), draw(U32)
    msg.encoding = draw(st.sampled_from(['rgb8', 'bgr8', 'mono8', 'rgba8', '', 'x' * 300]))
    msg.is_bigendian = draw(st.integers(0, 255))
    msg.data = bytes(draw(st.integers(0, 512)))
    return msg


@settings(max_examples=400, deadline=None)
@given(images())
def test_any_image_converts_or_is_refused_with_its_reason(msg: Image) -> None:
    try:
        rgb = image_codec.to_rgb(msg)
    except image_codec.ImageError as exc:
        assert str(exc)
    else:
        assert rgb.ndim == 3 and rgb.shape[2] == 3


def test_an_exception_in_a_callback_is_counted_and_the_node_lives_on(
        rclpy_context: object) -> None:
    from rclpy.executors import SingleThreadedExecutor
    from std_msgs.msg import Header

    from edgent_ros.nodes.runner import GuardedNode

    from .conftest import spin_until

    node = GuardedNode('guard_test', context=rclpy_context)
    taken: list[Header] = []

    def fragile(msg: Header) -> None:
        if msg.frame_id == 'bad':
            raise OverflowError('Python int too large to convert to C long')
        taken.append(msg)

    node.create_subscription(Header, '/guard_test', fragile, 10)
    pub = node.create_publisher(Header, '/guard_test', 10)
    executor = SingleThreadedExecutor(context=rclpy_context)
    executor.add_node(node)
    try:
        pub.publish(Header(frame_id='bad'))
        pub.publish(Header(frame_id='good'))
        assert spin_until(executor, lambda: len(taken) == 1, 10)
        assert node.callback_errors == 1
    finally:
        executor.shutdown()
        node.destroy_node()


def test_counts_by_source_stay_bounded() -> None:
    from edgent_ros.diagnostics import BoundedCounts

    counts = BoundedCounts(3)
    for i in range(3000):
        counts.add(f'/spoofed_{i}')
    counts.add('/spoofed_0')
    assert len(counts.counts) == 3 and counts.counts['/spoofed_0'] == 2
    assert counts.over_limit == 2997 and counts.total == 3001


@pytest.mark.ros
@pytest.mark.slow
def test_spoofed_sources_cannot_grow_the_edge(harness: object, processes: object) -> None:
    from diagnostic_msgs.msg import DiagnosticArray

    from edgent_ros.qos import TENSOR_QOS
    from edgent_ros_interfaces.msg import EdgeReply

    from .conftest import spin_until

    node, executor = harness
    replies: list[EdgeReply] = []
    statuses: list[dict[str, str]] = []
    node.create_subscription(EdgeReply, '/sp/reply', replies.append, TENSOR_QOS)
    node.create_subscription(
        DiagnosticArray, '/diagnostics',
        lambda m: statuses.extend({kv.key: kv.value for kv in s.values}
                                  for s in m.status if '/sp/edge' in s.name), 10)
    tensors = node.create_publisher(Tensor, '/sp/tensor', TENSOR_QOS)
    processes('edge_node', '-r', '__ns:=/sp', '-r', '__node:=edge')
    assert spin_until(executor, lambda: tensors.get_subscription_count() > 0, 60)
    frame = np.zeros((1, 3, 32, 32), np.float32)
    sources = [f'/spoofed_{i}' for i in range(80)] + ['/x' * 50_000]
    for seq, source in enumerate(sources, 1):
        msg = tc.to_msg(frame)
        msg.frame_seq, msg.source_id, msg.exit_point, msg.partition_point = seq, source, 5, 0
        tensors.publish(msg)
        spin_until(executor, lambda: False, 0.02)  # paced: the QoS keeps a few only
    assert spin_until(executor, lambda: len(replies) >= 60, 60), len(replies)
    answered = len({r.source_id for r in replies})

    def settled() -> bool:
        return bool(statuses) and statuses[-1].get('malformed') == '1' and \
            statuses[-1].get('tensors_served') == str(len(replies))
    assert spin_until(executor, settled, 10), statuses[-1:]
    last = statuses[-1]
    assert sum(k.startswith('served[') for k in last) == 32
    assert last['served_from_sources_over_limit'] == str(answered - 32)
    assert max(len(k) + len(v) for k, v in last.items()) < 200  # no 100 KB id echoed

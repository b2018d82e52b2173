"""Fuzz: over 1000 malformed Tensors and Images sent to running nodes.

The edge node gets malformed activations (length and shape mismatches,
unknown data types, absurd dimensions, exit or partition out of range, NaN
and inf payloads, oversized payloads, bad strides, a stride of 2**63 on a
size-1 dimension, meaningless quantization, values that overflow the
network); the device node gets
malformed images (unknown encodings, short data, bad steps, absurd or empty
sizes). Valid tensors and images go in between. Neither node may crash or
stall: every malformed message is counted in /diagnostics, the logs about
them are rate-limited, and every valid message is still answered.
"""

from __future__ import annotations

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from sensor_msgs.msg import Image

from edgent_ros import image_codec, tensor_codec
from edgent_ros import model as m
from edgent_ros.datasets import load_digits_split
from edgent_ros.qos import IMAGE_QOS, TENSOR_QOS
from edgent_ros_interfaces.msg import EdgeReply, InferenceResult, Tensor

from .conftest import CONTENT_FILTERS, spin_until

pytestmark = [pytest.mark.ros, pytest.mark.slow]

CARD = m.load_card(m.resolve_model_path(m.DEFAULT_MODEL))
NS = '/fz'


def good_tensor(rng: np.random.Generator, seq: int) -> Tensor:
    """A valid activation: exit 4 cut at partition 8 (a 64x8x8 map)."""
    shape = (1, *CARD.exit(4).layers[8].in_shape)
    msg = tensor_codec.to_msg(rng.standard_normal(shape).astype(np.float32), name='activation')
    msg.frame_seq = seq
    msg.source_id = 'fuzzer'
    msg.exit_point, msg.partition_point = 4, 8
    # Any deadline but NaN is one (0: none; +inf: never late; 1e30 ms: ample).
    msg.deadline_ms = float(rng.choice([0.0, np.inf, 1e30, 5000.0]))
    return msg


def bad_tensors(rng: np.random.Generator) -> list[tuple[str, Tensor]]:
    """One malformed tensor of each kind per call (deterministic with rng)."""
    out = []

    def base() -> Tensor:
        return good_tensor(rng, 0)

    t = base()
    t.data = t.data[: len(t.data) - int(rng.integers(1, 100))]
    out.append(('short data', t))
    t = base()
    t.data = list(t.data) + [0] * int(rng.integers(1, 64))
    out.append(('long data', t))
    t = base()
    t.shape = [1, 64, 4, 16]  # same size, wrong shape for the cut
    t.strides = [4096 * 4, 64 * 4, 16 * 4, 4]
    out.append(('shape mismatch', t))
    t = base()
    t.data_type = int(rng.choice([0, 12, 99, -1]))
    out.append(('unknown dtype', t))
    t = base()
    t.shape = [int(rng.integers(1 << 20, 1 << 32)), 1 << 20, 1 << 20]
    t.strides = [1, 1, 1]
    out.append(('absurd dimensions', t))
    t = base()
    t.shape = [1] * 20
    t.strides = [4] * 20
    out.append(('absurd rank', t))
    t = base()
    t.exit_point = int(rng.choice([0, 6, 255]))
    out.append(('exit out of range', t))
    t = base()
    t.partition_point = int(rng.choice([20, 21, 500, 65535]))
    out.append(('partition out of range', t))
    a = rng.standard_normal((1, *CARD.exit(4).layers[8].in_shape)).astype(np.float32)
    a.flat[int(rng.integers(a.size))] = np.nan
    t = tensor_codec.to_msg(a)
    t.exit_point, t.partition_point, t.source_id = 4, 8, 'fuzzer'
    out.append(('NaN payload', t))
    a = np.abs(a)
    a.flat[int(rng.integers(a.size))] = np.inf * rng.choice([-1, 1])
    t = tensor_codec.to_msg(a)
    t.exit_point, t.partition_point, t.source_id = 4, 8, 'fuzzer'
    out.append(('inf payload', t))
    t = base()
    t.strides = [1, 2, 3, 4]
    out.append(('bad strides', t))
    t = tensor_codec.to_msg(np.ones(a.shape, np.int32))
    t.exit_point, t.partition_point, t.source_id = 4, 8, 'fuzzer'
    out.append(('integer activation', t))
    t = base()
    t.strides = [int(rng.choice([2**63, 2**63 + 4, 2**64 - 4])), *t.strides[1:]]
    out.append(('huge stride on a size-1 dimension', t))  # killed the edge once
    t = base()
    t.quantization_scale = float(rng.choice([np.nan, np.inf, -1.0]))
    out.append(('meaningless quantization', t))
    t = base()
    t.deadline_ms = float('nan')
    out.append(('NaN deadline', t))
    t = tensor_codec.to_msg(np.full(a.shape, 3e38, np.float32))
    t.exit_point, t.partition_point, t.source_id = 4, 8, 'fuzzer'
    out.append(('overflowing values', t))
    return out


def oversized_tensor() -> Tensor:
    t = tensor_codec.to_msg(np.zeros((1, 64, 128, 128), np.float32))  # 4 MB
    t.exit_point, t.partition_point, t.source_id = 4, 8, 'fuzzer'
    return t


def bad_images(rng: np.random.Generator, frame: np.ndarray) -> list[tuple[str, Image]]:
    out = []

    def base() -> Image:
        return image_codec.from_rgb(frame)

    i = base()
    i.encoding = str(rng.choice(['yuv422', '', 'rgb16', '32FC1', 'bayer_rggb8']))
    out.append(('unknown encoding', i))
    i = base()
    i.data = i.data[: len(i.data) - int(rng.integers(1, len(i.data)))]
    out.append(('short data', i))
    i = base()
    i.step = int(rng.integers(0, i.width * 3))
    out.append(('step too small', i))
    i = base()
    i.height, i.width = int(rng.integers(20000, 1 << 31)), int(rng.integers(20000, 1 << 31))
    out.append(('absurd size', i))
    i = base()
    i.height = i.width = 0
    i.step = 0
    i.data = []
    out.append(('empty', i))
    i = base()
    i.height = 2000  # claims far more rows than it carries (within max_image_height)
    out.append(('rows missing', i))
    return out


def filtered_by_dds(msg: Image) -> bool:
    """Whether the device's reader filters the image out (over its default
    max_image_width x max_image_height): the node never sees it."""
    return msg.width > 3840 or msg.height > 2160


def diagnostics_value(statuses: dict[str, dict[str, str]], name_part: str, key: str) -> int:
    for name, values in statuses.items():
        if name_part in name and key in values:
            return int(float(values[key]))
    return -1


def test_nodes_survive_over_1000_malformed_messages(rclpy_context: object,
                                                     processes: object) -> None:
    edge = processes('edge_node', '-r', f'__ns:={NS}', '-r', '__node:=edge')
    device = processes('device_node', '-r', f'__ns:={NS}', '-r', '__node:=device',
                       '-r', 'tensor:=/fz_none/tensor')  # device answers alone
    node = Node('fuzzer', context=rclpy_context)
    executor = SingleThreadedExecutor(context=rclpy_context)
    executor.add_node(node)
    replies: list[EdgeReply] = []
    results: list[InferenceResult] = []
    statuses: dict[str, dict[str, str]] = {}

    def on_diag(msg: DiagnosticArray) -> None:
        for s in msg.status:
            statuses[s.name] = {kv.key: kv.value for kv in s.values}

    node.create_subscription(EdgeReply, f'{NS}/reply', replies.append, 100)
    node.create_subscription(InferenceResult, f'{NS}/result', results.append, 100)
    node.create_subscription(DiagnosticArray, '/diagnostics', on_diag, 50)
    tensors = node.create_publisher(Tensor, f'{NS}/tensor', TENSOR_QOS)
    images = node.create_publisher(Image, f'{NS}/image', IMAGE_QOS)
    assert spin_until(executor, lambda: tensors.get_subscription_count() > 0 and
                      images.get_subscription_count() > 0, 60)
    spin_until(executor, lambda: False, 1.0)

    rng = np.random.default_rng(7)
    frame = load_digits_split(seed=CARD.seed).test_images[0]
    sent_bad_tensors = sent_bad_images = sent_good_tensors = sent_good_images = 0
    filtered_images = 0  # over the device's size limits: dropped by DDS, never seen (Kilted)
    kinds: set[str] = set()
    while sent_bad_tensors + sent_bad_images < 1100:
        batch = bad_tensors(rng)
        for kind, msg in batch:
            tensors.publish(msg)
            sent_bad_tensors += 1
            kinds.add(f'tensor: {kind}')
            spin_until(executor, lambda: False, 0.003)
        for kind, msg in bad_images(rng, frame):
            images.publish(msg)
            sent_bad_images += 1
            filtered_images += filtered_by_dds(msg)
            kinds.add(f'image: {kind}')
            spin_until(executor, lambda: False, 0.005)
        # A valid tensor and a valid image after every 18 malformed messages.
        sent_good_tensors += 1
        tensors.publish(good_tensor(rng, 100000 + sent_good_tensors))
        good = image_codec.from_rgb(frame)
        good.header.stamp = node.get_clock().now().to_msg()
        images.publish(good)
        sent_good_images += 1
        spin_until(executor, lambda: False, 0.05)
    for _ in range(3):  # oversized payloads
        tensors.publish(oversized_tensor())
        sent_bad_tensors += 1
        spin_until(executor, lambda: False, 0.3)
    kinds.add('tensor: oversized')
    # A last valid pair, then the counters.
    tensors.publish(good_tensor(rng, 999999))
    sent_good_tensors += 1

    def settled() -> bool:
        return diagnostics_value(statuses, f'{NS}/edge', 'malformed') >= sent_bad_tensors and \
            diagnostics_value(statuses, f'{NS}/device', 'malformed_images') >= \
            sent_bad_images - filtered_images \
            and len(replies) >= sent_good_tensors and len(results) >= sent_good_images
    spin_until(executor, settled, 30)
    alive = edge.poll() is None and device.poll() is None
    executor.shutdown()
    node.destroy_node()
    assert alive, 'a node died under fuzzing'
    assert sent_bad_tensors + sent_bad_images >= 1000
    assert diagnostics_value(statuses, f'{NS}/edge', 'malformed') == sent_bad_tensors
    assert filtered_images > 0
    assert diagnostics_value(statuses, f'{NS}/device', 'malformed_images') == \
        sent_bad_images - filtered_images
    if CONTENT_FILTERS:
        assert diagnostics_value(statuses, f'{NS}/device', 'received') == \
            sent_good_images + sent_bad_images - filtered_images
    else:  # Jazzy: received, and dropped by the node as oversized
        assert diagnostics_value(statuses, f'{NS}/device', 'received') == \
            sent_good_images + sent_bad_images
        assert diagnostics_value(statuses, f'{NS}/device', 'oversized_images') == \
            filtered_images
    # Every valid message in between was answered.
    assert sorted(r.frame_seq for r in replies if r.source_id == 'fuzzer') == \
        [100000 + i for i in range(1, sent_good_tensors)] + [999999]
    assert len(results) == sent_good_images
    # Logged, but rate-limited: far fewer lines than messages.
    for proc, what in ((edge, 'dropping tensor'), (device, 'dropping image')):
        proc.send_signal(2)
        output = proc.communicate(timeout=20)[0]
        lines = output.count(what)
        assert 1 <= lines <= 40, (what, lines)
    print(f'{sent_bad_tensors} bad tensors, {sent_bad_images} bad images, '
          f'{sent_good_tensors} good tensors, {sent_good_images} good images; kinds: '
          f'{sorted(kinds)}')

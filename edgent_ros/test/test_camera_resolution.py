"""Frames at camera resolution (issue 16, item 1): a 640x480 frame published
by a separate process reaches the device node and is answered by a 224x224
model; the camera node publishes data-set frames at a size it is given; the
launch arguments pick 640x480 for a model larger than 32x32."""

from __future__ import annotations

import numpy as np
import pytest
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from sensor_msgs.msg import Image

from edgent_ros import image_codec
from edgent_ros import model as m
from edgent_ros.inference import preprocess
from edgent_ros.node_table import AUTO_CAMERA_SIZE, NODES, node_settings, parse_arguments
from edgent_ros.qos import IMAGE_QOS
from edgent_ros_interfaces.msg import InferenceResult

from .conftest import spin_until

NS = '/vga'


@pytest.fixture
def harness(rclpy_context: object) -> object:
    node = Node('vga_test', context=rclpy_context)
    executor = SingleThreadedExecutor(context=rclpy_context)
    executor.add_node(node)
    yield node, executor
    executor.shutdown()
    node.destroy_node()


def test_preprocess_resizes_and_normalises_as_the_card_says(vga_model: object) -> None:
    card = m.load_card(vga_model)
    frame = np.full((480, 640, 3), 255, dtype=np.uint8)
    x = preprocess(frame, card)
    assert tuple(x.shape) == (1, 3, 224, 224)
    expected = [(1.0 - mean) / std for mean, std in zip(card.mean, card.std, strict=True)]
    np.testing.assert_allclose(x[0, :, 100, 100].numpy(), expected, rtol=1e-5)


def test_camera_size_auto_is_vga_for_a_larger_model(vga_model: object) -> None:
    camera = next(s for s in NODES['device'] if s.name == 'camera')
    given = parse_arguments([f'model:={vga_model}'], ('device',))
    assert node_settings(camera, given).parameters == {
        'image_width': AUTO_CAMERA_SIZE[0], 'image_height': AUTO_CAMERA_SIZE[1]}
    given = parse_arguments([f'model:={vga_model}', 'camera_size:=0x0'], ('device',))
    assert node_settings(camera, given).parameters == {'image_width': 0, 'image_height': 0}


@pytest.mark.ros
@pytest.mark.slow
def test_camera_frames_at_640x480_are_answered_by_a_224_model(
        harness: object, processes: object, vga_model: object) -> None:
    node, executor = harness
    results: list[InferenceResult] = []
    sizes: list[tuple[int, int]] = []
    node.create_subscription(InferenceResult, f'{NS}/result', results.append, 100)
    node.create_subscription(Image, f'{NS}/image', lambda msg: sizes.append(
        (msg.width, msg.height)), IMAGE_QOS)
    card = m.load_card(vga_model)
    processes('device_node', '-r', f'__ns:={NS}', '-r', '__node:=device',
              '-p', f'model:={vga_model}')
    # Frames of a separate process: the data-set camera at 640x480.
    processes('camera_node', '-r', f'__ns:={NS}', '-r', '__node:=camera',
              '-p', 'image_width:=640', '-p', 'image_height:=480', '-p', 'rate_hz:=4.0',
              '-p', 'wait_for_subscribers:=true', '-p', 'count:=400')
    assert spin_until(executor, lambda: len(results) >= 5, 120), \
        f'{len(results)} results, images seen: {sizes[:3]}'
    assert sizes and set(sizes) == {(640, 480)}
    best = len(card.exits)
    for r in results:
        assert not r.skipped
        assert r.exit_point == best and r.partition_point == card.exits[-1].num_layers
        assert 0 <= r.class_id < card.num_classes
        assert len(r.top_k_class_ids) >= 1 and np.isfinite(r.score)
    # Answered by the 224x224 model: nothing in the answer could come from 32x32.


@pytest.mark.ros
@pytest.mark.slow
def test_a_frame_from_a_stranger_at_640x480_is_answered(
        harness: object, processes: object, vga_model: object) -> None:
    node, executor = harness
    results: list[InferenceResult] = []
    node.create_subscription(InferenceResult, f'{NS}2/result', results.append, 100)
    images = node.create_publisher(Image, f'{NS}2/image', IMAGE_QOS)
    processes('device_node', '-r', f'__ns:={NS}2', '-r', '__node:=device',
              '-p', f'model:={vga_model}')
    assert spin_until(executor, lambda: images.get_subscription_count() > 0, 60)
    rng = np.random.default_rng(1)
    for encoding in ('rgb8', 'bgr8', 'mono8'):
        frame = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
        msg = image_codec.from_rgb(frame, encoding)
        msg.header.stamp = node.get_clock().now().to_msg()
        count = len(results)
        # Best effort, and the device's reader may match a moment after this
        # writer saw it: send again each second until an answer comes.
        for _ in range(60):
            images.publish(msg)
            if spin_until(executor, lambda c=count: len(results) > c, 1.0):
                break
        assert len(results) > count, encoding
    assert all(not r.skipped and 0 <= r.class_id < 10 for r in results)

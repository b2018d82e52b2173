"""Co-inference with real processes over DDS: camera, device and edge nodes."""

from __future__ import annotations

import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.time import Time
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image

from edgent_ros import image_codec
from edgent_ros import model as m
from edgent_ros.datasets import load_digits_split
from edgent_ros.qos import IMAGE_QOS, LATCHED_QOS, TENSOR_QOS
from edgent_ros_interfaces.msg import InferenceResult, Plan, Tensor

from .conftest import spin_until

pytestmark = [pytest.mark.ros, pytest.mark.slow]

CARD = m.load_card(m.resolve_model_path(m.DEFAULT_MODEL))


def plan(plan_id: int, exit_point: int, partition: int) -> Plan:
    n = CARD.exit(exit_point).num_layers
    return Plan(plan_id=plan_id, exit_point=exit_point, num_exits=5, partition_point=partition,
                num_layers=n, latency_requirement_ms=1000.0, predicted_latency_ms=10.0,
                deadline_met=True)


def device(processes: object, ns: str, *extra: str) -> object:
    return processes('device_node', '-r', f'__ns:={ns}', '-r', '__node:=device',
                     '-r', 'tensor:=/pt_edge/tensor', '-r', 'reply:=/pt_edge/reply', *extra)


def edge(processes: object) -> object:
    return processes('edge_node', '-r', '__ns:=/pt_edge', '-r', '__node:=edge')


def wait_for_graph(node: Node, executor: object, devices: int = 1, edge: bool = True) -> None:
    """Until the devices' tensor publishers and the edge's subscriber are up (then 1 s
    more for the two to match each other)."""
    def ready() -> bool:
        return node.count_publishers('/pt_edge/tensor') >= devices and \
            (not edge or node.count_subscribers('/pt_edge/tensor') >= 1)
    assert spin_until(executor, ready, 60)
    spin_until(executor, lambda: False, 1.0)


def test_every_frame_answered_through_the_edge_and_scored(harness: object,
                                                          processes: object) -> None:
    node, executor = harness
    results: list[InferenceResult] = []
    node.create_subscription(InferenceResult, '/pt/result', results.append, 50)
    plans = node.create_publisher(Plan, '/pt/plan', LATCHED_QOS)
    plans.publish(plan(7, 5, 8))  # device runs 8 layers, the edge the other 14
    edge(processes)
    # Every frame is run, even one a cold start made late (skipping is tested below).
    device(processes, '/pt', '-p', 'skip_late_frames:=false')
    wait_for_graph(node, executor)
    frames = 20
    processes('camera_node', '-r', '__ns:=/pt', '-p', f'count:={frames}', '-p', 'rate_hz:=10.0',
              '-p', 'wait_for_subscribers:=true')
    assert spin_until(executor, lambda: len(results) >= frames, 60), len(results)
    spin_until(executor, lambda: False, 1.0)
    assert len(results) == frames  # every frame answered, once
    assert sorted(r.frame_seq for r in results) == list(range(1, frames + 1))
    for r in results:
        assert (r.plan_id, r.exit_point, r.partition_point) == (7, 5, 8)
        assert r.edge_ms > 0 and r.device_ms > 0 and r.latency_ms > 0
        assert r.label >= 0 and len(r.top_k_class_ids) == 3
        assert r.top_k_class_ids[0] == r.class_id and 0 < r.score <= 1
    correct = sum(r.label == r.class_id for r in results)
    assert correct >= 0.6 * frames  # exit 5 scores ~96% held out


def test_plan_change_mid_stream_takes_effect_between_frames(harness: object,
                                                            processes: object) -> None:
    node, executor = harness
    results: list[InferenceResult] = []
    node.create_subscription(InferenceResult, '/pt/result', results.append, 50)
    plans = node.create_publisher(Plan, '/pt/plan', LATCHED_QOS)
    plans.publish(plan(1, 4, 20))  # device only
    edge(processes)
    device(processes, '/pt')
    wait_for_graph(node, executor)
    processes('camera_node', '-r', '__ns:=/pt', '-p', 'rate_hz:=10.0')
    assert spin_until(executor, lambda: len(results) >= 8, 60)
    plans.publish(plan(2, 2, 0))  # edge only, another exit
    assert spin_until(executor, lambda: sum(r.plan_id == 2 for r in results) >= 8, 60)
    by_plan = {1: (4, 20, 0.0), 2: (2, 0, None)}
    switched = False
    for r in sorted(results, key=lambda r: r.frame_seq):
        exit_point, partition, _ = by_plan[r.plan_id]
        assert (r.exit_point, r.partition_point) == (exit_point, partition)
        if r.plan_id == 2:
            switched = True
            assert r.edge_ms > 0
        else:
            assert not switched  # never back to the old plan
            assert r.edge_ms == 0.0 and r.transfer_ms == 0.0


def test_each_supported_encoding_and_a_refused_one(harness: object, processes: object) -> None:
    node, executor = harness
    results: list[InferenceResult] = []
    diags: list[DiagnosticArray] = []
    node.create_subscription(InferenceResult, '/pt_enc/result', results.append, 50)
    node.create_subscription(DiagnosticArray, '/diagnostics', diags.append, 50)
    images = node.create_publisher(Image, '/pt_enc/image', IMAGE_QOS)
    plans = node.create_publisher(Plan, '/pt_enc/plan', LATCHED_QOS)
    plans.publish(plan(3, 5, 22))
    proc = device(processes, '/pt_enc')
    assert spin_until(executor, lambda: images.get_subscription_count() > 0, 60)
    spin_until(executor, lambda: False, 2)
    split = load_digits_split(seed=CARD.seed)
    frame = split.test_images[0]
    sent = 0
    for encoding in ('rgb8', 'bgr8', 'mono8', 'rgba8', 'rgb8'):
        if encoding == 'rgba8':
            bad = Image(height=32, width=32, encoding='rgba8', step=128, data=bytes(4096))
            images.publish(bad)
        else:
            msg = image_codec.from_rgb(frame, encoding)
            msg.header.stamp = node.get_clock().now().to_msg()
            images.publish(msg)
            sent += 1
        spin_until(executor, lambda: False, 0.5)
    assert spin_until(executor, lambda: len(results) >= sent, 30)
    assert len({r.class_id for r in results}) == 1  # same frame, same answer
    assert results[0].class_id == int(split.test_labels[0])

    def malformed_counted() -> bool:
        for d in diags:
            for s in d.status:
                if s.name.startswith('/pt_enc/device'):
                    values = {kv.key: kv.value for kv in s.values}
                    if values.get('malformed_images') == '1':
                        return True
        return False

    assert spin_until(executor, malformed_counted, 10)
    assert proc.poll() is None  # still running after the bad image


def test_two_devices_share_one_edge(harness: object, processes: object) -> None:
    node, executor = harness
    results: dict[str, list[InferenceResult]] = {'/dev_a': [], '/dev_b': []}
    pubs = {}
    for ns, got in results.items():
        node.create_subscription(InferenceResult, f'{ns}/result', got.append, 50)
        node.create_publisher(Plan, f'{ns}/plan', LATCHED_QOS).publish(plan(5, 3, 0))
        pubs[ns] = node.create_publisher(Image, f'{ns}/image', IMAGE_QOS)
    edge(processes)
    for ns in results:
        device(processes, ns)
    assert spin_until(executor, lambda: all(p.get_subscription_count() for p in pubs.values()),
                      60)
    wait_for_graph(node, executor, devices=2)
    rng = np.random.default_rng(0)
    for _ in range(6):
        for p in pubs.values():
            msg = image_codec.from_rgb(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
            msg.header.stamp = node.get_clock().now().to_msg()
            p.publish(msg)
        spin_until(executor, lambda: False, 0.2)
    assert spin_until(executor, lambda: all(len(r) >= 6 for r in results.values()), 40)
    for ns, got in results.items():
        assert len(got) == 6
        assert {r.source_id for r in got} == {ns}
        assert all(r.edge_ms > 0 and r.partition_point == 0 for r in got)


def test_without_an_edge_the_device_answers_alone(harness: object, processes: object) -> None:
    node, executor = harness
    results: list[InferenceResult] = []
    node.create_subscription(InferenceResult, '/pt_alone/result', results.append, 50)
    images = node.create_publisher(Image, '/pt_alone/image', IMAGE_QOS)
    node.create_publisher(Plan, '/pt_alone/plan', LATCHED_QOS).publish(plan(4, 5, 6))
    device(processes, '/pt_alone', '-r', 'tensor:=/pt_nobody/tensor')
    assert spin_until(executor, lambda: images.get_subscription_count() > 0, 60)
    spin_until(executor, lambda: False, 2)
    frame = load_digits_split(seed=CARD.seed).test_images[1]
    for _ in range(3):
        msg = image_codec.from_rgb(frame)
        msg.header.stamp = node.get_clock().now().to_msg()
        images.publish(msg)
        spin_until(executor, lambda: False, 0.3)
    assert spin_until(executor, lambda: len(results) >= 3, 20)
    assert all(r.fallback and r.edge_ms == 0.0 and
               r.partition_point == CARD.exit(r.exit_point).num_layers for r in results)


def given_up_plan(plan_id: int, tail_ms: float, fallback_ms: float) -> Plan:
    p = plan(plan_id, 5, 6)
    p.fallback_exit_point = 1
    p.fallback_num_layers = CARD.exit(1).num_layers
    p.predicted_fallback_ms = fallback_ms
    p.predicted_device_tail_ms = tail_ms
    return p


@pytest.mark.parametrize(('tail_ms', 'fallback_ms', 'exit_point', 'trial_partition'), [
    # Finishing exit 5 from the activation sent is quick: it is done, and the
    # trial that follows carries the plan's activation (partition 6).
    (1.0, 900.0, 5, 6),
    # It would miss the deadline: the fallback exit, from the input, which
    # the trial then carries (partition 0).
    (5000.0, 1.0, 1, 0),
])
def test_a_frame_the_edge_does_not_answer_is_finished_on_the_device(
        harness: object, processes: object, tail_ms: float, fallback_ms: float,
        exit_point: int, trial_partition: int) -> None:
    node, executor = harness
    ns = f'/pt_mute{exit_point}'
    results: list[InferenceResult] = []
    node.create_subscription(InferenceResult, f'{ns}/result', results.append, 50)
    # An "edge" that takes tensors and never answers.
    tensors: list[Tensor] = []
    node.create_subscription(Tensor, f'{ns}_edge/tensor', tensors.append, TENSOR_QOS)
    images = node.create_publisher(Image, f'{ns}/image', IMAGE_QOS)
    node.create_publisher(Plan, f'{ns}/plan', LATCHED_QOS).publish(
        given_up_plan(9, tail_ms, fallback_ms))
    processes('device_node', '-r', f'__ns:={ns}', '-r', '__node:=device',
              '-r', f'tensor:={ns}_edge/tensor', '-r', f'reply:={ns}_edge/reply')
    assert spin_until(executor, lambda: images.get_subscription_count() > 0 and
                      node.count_publishers(f'{ns}_edge/tensor') > 0, 60)
    spin_until(executor, lambda: False, 2)
    msg = image_codec.from_rgb(load_digits_split(seed=CARD.seed).test_images[1])
    msg.header.stamp = node.get_clock().now().to_msg()
    images.publish(msg)
    assert spin_until(executor, lambda: len(results) >= 1, 20)
    r = results[0]
    assert r.frame_seq == 1 and r.fallback and r.edge_ms == 0.0
    assert (r.exit_point, r.partition_point) == (exit_point, CARD.exit(exit_point).num_layers)
    # The edge is now taken as down: the next frame is answered on the device
    # and sent to the edge as a trial.
    msg.header.stamp = node.get_clock().now().to_msg()
    images.publish(msg)
    assert spin_until(executor, lambda: len(results) >= 2 and len(tensors) >= 2, 20)
    assert tensors[0].partition_point == 6 and tensors[1].frame_seq == 2
    assert tensors[1].partition_point == trial_partition
    r = results[1]
    assert r.frame_seq == 2 and r.fallback
    assert (r.exit_point, r.partition_point) == (exit_point, CARD.exit(exit_point).num_layers)


def test_a_frame_already_late_is_skipped_and_counted(harness: object,
                                                     processes: object) -> None:
    node, executor = harness
    results: list[InferenceResult] = []
    skipped: list[int] = []

    def on_diag(msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.startswith('/pt_late/device'):
                values = {kv.key: kv.value for kv in status.values}
                skipped.append(int(values['skipped_late']))

    node.create_subscription(InferenceResult, '/pt_late/result', results.append, 50)
    node.create_subscription(DiagnosticArray, '/diagnostics', on_diag, 10)
    images = node.create_publisher(Image, '/pt_late/image', IMAGE_QOS)
    node.create_publisher(Plan, '/pt_late/plan', LATCHED_QOS).publish(plan(3, 5, 22))
    device(processes, '/pt_late')
    assert spin_until(executor, lambda: images.get_subscription_count() > 0, 60)
    spin_until(executor, lambda: False, 2)
    frame = load_digits_split(seed=CARD.seed).test_images[1]
    for age_s in (2.0, 0.0):  # 2 s old against a 1 s deadline, then a fresh one
        msg = image_codec.from_rgb(frame)
        msg.header.stamp = (node.get_clock().now() - Duration(seconds=age_s)).to_msg()
        images.publish(msg)
        spin_until(executor, lambda: False, 0.3)
    assert spin_until(executor, lambda: len(results) >= 2 and skipped and skipped[-1] >= 1, 20)
    spin_until(executor, lambda: False, 0.5)
    assert [(r.frame_seq, r.skipped) for r in results] == [(1, True), (2, False)]
    late = results[0]  # answered at once, as skipped: a miss with no class
    assert late.class_id == -1 and not late.deadline_met and late.latency_ms >= 2000
    assert results[1].class_id >= 0 and results[1].deadline_met
    assert skipped[-1] == 1


def test_the_pipeline_runs_on_sim_time(harness: object, processes: object) -> None:
    """use_sim_time:=true on camera, device and edge, with /clock published
    here at 100 Hz, at real-time speed, from 1000 s: far from the wall
    clock, so a stamp, age or wait taken from it would show (ages of decades,
    every frame skipped or late)."""
    node, executor = harness
    clock = node.create_publisher(Clock, '/clock', 10)
    start = time.monotonic()

    def tick() -> None:
        now = 1000.0 + time.monotonic() - start
        clock.publish(Clock(clock=Time(nanoseconds=round(now * 1e9)).to_msg()))

    node.create_timer(0.01, tick)
    results: list[InferenceResult] = []
    node.create_subscription(InferenceResult, '/pt_sim/result', results.append, 50)
    node.create_publisher(Plan, '/pt_sim/plan', LATCHED_QOS).publish(plan(5, 5, 8))
    sim = ('-p', 'use_sim_time:=true')
    processes('edge_node', '-r', '__ns:=/pt_edge', '-r', '__node:=edge', *sim)
    device(processes, '/pt_sim', *sim)
    wait_for_graph(node, executor)
    frames = 10
    processes('camera_node', '-r', '__ns:=/pt_sim', '-p', f'count:={frames}',
              '-p', 'rate_hz:=5.0', '-p', 'wait_for_subscribers:=true', *sim)
    assert spin_until(executor, lambda: len(results) >= frames, 60), \
        str([(r.frame_seq, r.skipped, round(r.latency_ms)) for r in results])
    now = 1000.0 + time.monotonic() - start
    assert sorted(r.frame_seq for r in results) == list(range(1, frames + 1))
    for r in results:
        stamp = r.header.stamp.sec + r.header.stamp.nanosec * 1e-9
        assert 1000.0 < stamp < now  # the camera stamps with sim time
        assert not r.skipped and not r.fallback and r.edge_ms > 0
        # Sim time moves in 10 ms steps here: a quick frame may take none.
        assert 0 <= r.latency_ms < 1000.0 and r.deadline_met

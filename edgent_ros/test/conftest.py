"""Shared test set-up: an isolated DDS domain on this machine, and rclpy."""

from __future__ import annotations

import importlib.util
import os
import random
import shutil
from collections.abc import Iterator

import pytest

# Keep every test's DDS traffic on this machine and away from other ROS 2
# graphs that may run here: a domain of our own, discovery on localhost only.
os.environ.setdefault('ROS_DOMAIN_ID', str(random.Random(os.getpid()).randint(1, 100)))
os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
os.environ['PYTHONSAFEPATH'] = '1'
# The tests' own nodes use the DDS profile as every edgent_ros process does
# (Fast DDS reads it once, when this process creates its first participant).
# The profile tests strip it from the environments they make.
from edgent_ros import dds_profile

dds_profile.apply()


@pytest.fixture
def rclpy_context() -> Iterator[object]:
    """An initialised rclpy context of the test's own, shut down afterwards."""
    import rclpy
    from rclpy.context import Context

    context = Context()
    rclpy.init(context=context)
    try:
        yield context
    finally:
        rclpy.try_shutdown(context=context)


@pytest.fixture
def harness(rclpy_context: object) -> Iterator[tuple[object, object]]:
    """A node of the test's own and a single-threaded executor spinning it:
    (node, executor); both shut down after the test."""
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node

    node = Node('edgent_test', context=rclpy_context)
    executor = SingleThreadedExecutor(context=rclpy_context)
    executor.add_node(node)
    try:
        yield node, executor
    finally:
        executor.shutdown()
        node.destroy_node()


@pytest.fixture
def device_outputs(rclpy_context: object) -> Iterator[object]:
    """A node listening to the default topology's /device/result and /device/plan:
    (executor, results, plans); shut down after the test."""
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node

    from edgent_ros.qos import LATCHED_QOS
    from edgent_ros_interfaces.msg import InferenceResult, Plan

    node = Node('outputs_test', context=rclpy_context)
    executor = SingleThreadedExecutor(context=rclpy_context)
    executor.add_node(node)
    results: list = []
    plans: list = []
    node.create_subscription(InferenceResult, '/device/result', results.append, 50)
    node.create_subscription(Plan, '/device/plan', plans.append, LATCHED_QOS)
    try:
        yield executor, results, plans
    finally:
        executor.shutdown()
        node.destroy_node()


def executable(name: str) -> str:
    """Path of one of the package's installed executables."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f'{name} is not on PATH: run the tests through `make test`')
    return path


# rclpy's content filters (Kilted and later): images over a device's size
# limits are dropped by DDS, never received. On Jazzy the node drops them.
CONTENT_FILTERS = importlib.util.find_spec('rclpy.subscription_content_filter_options') \
    is not None


def spin_until(executor: object, predicate: object, timeout: float) -> bool:
    """Spin an executor until predicate() is true or timeout seconds pass."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        executor.spin_once(timeout_sec=0.05)
    return bool(predicate())


@pytest.fixture
def processes() -> Iterator[object]:
    """Start executables as real processes; all are stopped after the test."""
    import subprocess

    started: list[subprocess.Popen] = []

    def start(name: str, *ros_args: str) -> subprocess.Popen:
        proc = subprocess.Popen([executable(name), '--ros-args', *ros_args],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        started.append(proc)
        return proc

    yield start
    from edgent_ros.bringup import stop_processes
    stop_processes(started)


def start_session(cmd: list[str]) -> object:
    """Start a launcher (launch, edgent-bringup) in a process session of its own."""
    import subprocess

    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def stop_session(proc: object, signum: int) -> str:
    """Ask a launcher to stop (signum), then end whatever its session left; its output."""
    import contextlib
    import os
    import signal

    proc.send_signal(signum)
    try:
        return proc.communicate(timeout=30)[0]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


TESTBED_RATE_KBIT = 2000.0


@pytest.fixture
def bed() -> Iterator[object]:
    """A testbed (two namespaces, a 2 Mbit/s tbf link); afterwards, checks that
    nothing of it (namespaces, processes) outlived it."""
    import subprocess
    from pathlib import Path

    from edgent_ros import testbed

    why = testbed.available()
    if why:
        pytest.skip(f'the testbed cannot run here: {why}')
    with testbed.Testbed(TESTBED_RATE_KBIT) as bed:
        yield bed
        inside = [int(pid) for ns in (bed.device_ns, bed.edge_ns) for pid in subprocess.run(
            ['ip', 'netns', 'pids', ns], capture_output=True, text=True).stdout.split()]
    assert bed.device_ns not in testbed.leftovers()
    survivors = [pid for pid in inside if Path(f'/proc/{pid}').exists()]
    assert not survivors, f'processes outlived the testbed: {survivors}'


@pytest.fixture(scope='session')
def vga_model(tmp_path_factory: pytest.TempPathFactory) -> object:
    """A MobileNetV3-Small with exits at 224x224 (random weights, 10 classes),
    saved as a model card and state_dict: the YAML's path."""
    import torch

    from edgent_ros import model as m

    torch.manual_seed(0)
    net = m.BranchyNetwork('mobilenet_v3_small', 10, (3, 224, 224)).eval()
    directory = tmp_path_factory.mktemp('models')
    _, card = m.save(net, directory, 'mobilenet_test224', accuracies=[0.5, 0.6, 0.7, 0.8],
                     dataset='none (random weights)', seed=0, training={},
                     class_names=[str(i) for i in range(10)])
    return card

"""The one node table: launch arguments act alike in launch files and edgent-bringup."""

from __future__ import annotations

import ast
import importlib
import signal
from pathlib import Path

import pytest

from edgent_ros.bringup import ros_args, specs
from edgent_ros.node_table import ARGUMENTS, NODES, node_settings, parse_arguments

from .conftest import executable, spin_until, start_session, stop_session

PACKAGE = Path(__file__).resolve().parents[1]


def spec(name: str) -> object:
    return next(s for role in NODES.values() for s in role if s.name == name)


def test_an_argument_not_given_changes_nothing() -> None:
    given = parse_arguments([], ('device',))
    assert given['latency_requirement_ms'] == ''  # the file's value stands
    planner = node_settings(spec('planner'), given)
    assert planner.parameters == {} and planner.enabled
    device = node_settings(spec('device'), given)
    assert ('image', '') not in device.remappings
    assert dict(device.remappings) == {'tensor': '/edge/tensor', 'reply': '/edge/reply'}
    assert node_settings(spec('camera'), given).enabled
    args = ros_args(spec('planner'), [Path('p.yaml')], [], [], given)
    assert 'latency_requirement_ms' not in ' '.join(args)


def test_arguments_given_remap_override_and_switch_nodes() -> None:
    given = parse_arguments(['image:=/cam/image_raw', 'use_camera:=false',
                             'latency_requirement_ms:=300'], ('device',))
    assert node_settings(spec('planner'), given).parameters == {'latency_requirement_ms': 300.0}
    assert ('image', '/cam/image_raw') in node_settings(spec('device'), given).remappings
    assert not node_settings(spec('camera'), given).enabled
    assert [s.name for s in specs('device', given=given)] == [
        'device', 'bandwidth_monitor', 'planner']
    # A double on the command line even for an integer text: the node declares a double.
    args = ' '.join(ros_args(spec('planner'), [], [], [], given))
    assert '-p latency_requirement_ms:=300.0' in args


def test_namespaces_move_a_robots_nodes_and_their_link_to_its_edge() -> None:
    """Several robots share an edge: each in its own namespace, each told the edge's."""
    given = parse_arguments(['namespace:=robot2', 'edge_namespace:=/edge1/'], ('device',))
    device = node_settings(spec('device'), given)
    assert device.namespace == '/robot2'
    assert dict(device.remappings) == {'tensor': '/edge1/tensor', 'reply': '/edge1/reply'}
    assert dict(node_settings(spec('planner'), given).remappings) == {
        'edge_load': '/edge1/edge_load'}
    assert dict(node_settings(spec('bandwidth_monitor'), given).remappings)['probe'] == \
        '/edge1/probe'
    assert '-r __ns:=/robot2' in ' '.join(ros_args(spec('camera'), [], [], [], given))
    edge = node_settings(spec('edge'), parse_arguments(
        ['namespace:=/edge1', 'device_namespace:=/robot2'], ('edge',)))
    assert edge.namespace == '/edge1' and dict(edge.remappings) == {'plan': '/robot2/plan'}
    default = node_settings(spec('device'), parse_arguments([], ('device',)))
    assert default.namespace == '/device'
    with pytest.raises(ValueError, match='namespace must be a ROS namespace'):
        node_settings(spec('device'), parse_arguments(['namespace:=/2robot'], ('device',)))


def test_model_argument_reaches_every_node_that_loads_a_model() -> None:
    given = parse_arguments(['model:=/models/my_net.yaml', 'camera_size:=1280x720'],
                            ('device', 'edge'))
    for name in ('device', 'planner', 'edge'):
        assert node_settings(spec(name), given).parameters['model'] == '/models/my_net.yaml'
    camera = node_settings(spec('camera'), given).parameters
    assert camera == {'image_width': 1280, 'image_height': 720}
    args = ' '.join(ros_args(spec('device'), [], [], [], given))
    assert "-p model:='/models/my_net.yaml'" in args


def test_camera_size_auto_follows_the_model_given() -> None:
    # The paper's 32x32 model: the parameter file's size stands.
    small = parse_arguments(['model:=branchy_alexnet_digits'], ('device',))
    assert node_settings(spec('camera'), small).parameters == {}
    assert node_settings(spec('camera'), parse_arguments([], ('device',))).parameters == {}


@pytest.mark.parametrize('pairs, message', [
    (['deadline:=3'], 'unknown launch argument'),
    (['latency_requirement_ms'], 'expected NAME:=VALUE'),
])
def test_bad_arguments_are_refused_with_the_reason(pairs: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_arguments(pairs, ('device',))


@pytest.mark.parametrize('pair, message', [
    ('latency_requirement_ms:=fast', 'latency_requirement_ms must be a number'),
    ('camera_size:=640', 'camera_size must be WIDTHxHEIGHT'),
    ('use_camera:=maybe', 'use_camera must be true or false'),
])
def test_bad_argument_values_are_refused_with_the_reason(pair: str, message: str) -> None:
    given = parse_arguments([pair], ('device',))
    with pytest.raises(ValueError, match=message):
        for role in NODES.values():
            for s in role:
                node_settings(s, given)


def test_every_node_of_the_table_is_an_executable_and_a_node_class() -> None:
    tree = ast.parse((PACKAGE / 'setup.py').read_text())
    scripts = {node.value.split(' = ')[0]: node.value.split(' = ')[1]
               for node in ast.walk(tree) if isinstance(node, ast.Constant)
               and isinstance(node.value, str) and ' = edgent_ros.' in node.value}
    from rclpy.node import Node
    for role in NODES.values():
        for s in role:
            assert scripts[s.executable] == f'{s.module}:main'
            cls = getattr(importlib.import_module(s.module), s.class_name)
            assert issubclass(cls, Node)
    assert set(ARGUMENTS) == set(NODES)


@pytest.mark.ros
@pytest.mark.slow
@pytest.mark.parametrize('arguments, expected', [([], 500.0),
                                                 (['latency_requirement_ms:=300'], 300.0)])
def test_the_parameter_file_stands_unless_the_argument_is_given(
        device_outputs: object, tmp_path: Path, arguments: list[str], expected: float) -> None:
    executor, _, plans = device_outputs
    params = tmp_path / 'my_device.yaml'
    params.write_text('/device/planner:\n  ros__parameters:\n    latency_requirement_ms: 500.0\n')
    proc = start_session([executable('edgent-bringup'), '--role', 'device', '--only', 'planner',
                          '--params-file', str(params), '--duration', '30', *arguments])
    try:
        assert spin_until(executor, lambda: bool(plans), 30)
    finally:
        output = stop_session(proc, signal.SIGTERM)
    assert plans[-1].latency_requirement_ms == expected, output[-2000:]


def test_bringup_refuses_an_unknown_argument() -> None:
    import subprocess
    result = subprocess.run([executable('edgent-bringup'), '--role', 'edge', 'image:=/x'],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "unknown launch argument 'image'" in result.stderr


def test_a_node_that_dies_is_started_again_up_to_a_limit() -> None:
    from edgent_ros.node_table import REFUSED, Respawner

    camera, device = spec('camera'), spec('device')
    r = Respawner(delay_s=2.0, max_retries=2)
    assert r.on_exit(device, -9, 10.0) == 12.0
    assert r.on_exit(device, 1, 20.0) == 22.0
    assert r.on_exit(device, -9, 30.0) is None  # the limit
    assert r.on_exit(camera, 0, 0.0) is None  # a replay that finished is done
    assert r.on_exit(camera, -9, 0.0) == 2.0  # a camera that crashed is not
    assert r.on_exit(spec('planner'), REFUSED, 0.0) is None  # would refuse again


@pytest.mark.ros
@pytest.mark.slow
def test_kill_9_of_each_node_under_bringup_all(device_outputs: object) -> None:
    import os
    import re
    import threading

    executor, results, _ = device_outputs
    proc = start_session([executable('edgent-bringup'), '--role', 'all', '--duration', '300'])
    started: dict[str, list[int]] = {}

    def read() -> None:
        for line in proc.stdout:
            found = re.search(r'started (\S+) \(pid (\d+)\)', line)
            if found:
                started.setdefault(found.group(1), []).append(int(found.group(2)))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert spin_until(executor, lambda: len(results) >= 5, 60)
        for name in ('/edge/edge', '/edge/probe_echo', '/device/planner',
                     '/device/bandwidth_monitor', '/device/camera', '/device/device'):
            os.kill(started[name][-1], signal.SIGKILL)
            assert spin_until(executor, lambda n=name: len(started[n]) == 2, 30), started
            before = len(results)
            # Frames keep being answered (by the device alone while the edge is
            # down), and on once the node is back.
            assert spin_until(executor, lambda b=before: len(results) >= b + 5, 60), name
    finally:
        output = stop_session(proc, signal.SIGTERM)
    assert all(len(pids) == 2 for pids in started.values()), (started, output[-2000:])

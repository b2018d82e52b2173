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


@pytest.mark.parametrize('pairs, message', [
    (['deadline:=3'], 'unknown launch argument'),
    (['latency_requirement_ms'], 'expected NAME:=VALUE'),
])
def test_bad_arguments_are_refused_with_the_reason(pairs: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_arguments(pairs, ('device',))


@pytest.mark.parametrize('pair, message', [
    ('latency_requirement_ms:=fast', 'latency_requirement_ms must be a number'),
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

"""Bad configuration, at start and at run time: refused with the reason.

At start a node given an unknown model, a missing or corrupt profile, a
negative deadline or an out-of-range parameter exits with status 2 and says
why. At run time a refused change leaves the running node on its last good
configuration, still planning.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter, parameter_value_to_python
from rclpy.parameter_client import AsyncParameterClient

from edgent_ros.qos import LATCHED_QOS
from edgent_ros_interfaces.msg import Plan

from .conftest import executable, spin_until

pytestmark = pytest.mark.ros


def start(name: str, *params: str) -> tuple[int, str]:
    args = [a for p in params for a in ('-p', p)]
    proc = subprocess.run([executable(name), '--ros-args', '-r', '__ns:=/cfg_start', *args],
                          capture_output=True, text=True, timeout=60)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.fixture
def corrupt_profile(tmp_path: Path) -> Path:
    path = tmp_path / 'corrupt.yaml'
    path.write_text('layers: {conv: {variables: [a], coef: [1.0, 2.0], intercept: .nan}}\n')
    return path


@pytest.mark.parametrize('name, params, reason', [
    ('planner_node', ['model:=no_such_model'], 'no_such_model'),
    ('planner_node', ['device_profile:=/nonexistent/profile.yaml'], '/nonexistent/profile.yaml'),
    ('planner_node', ['latency_requirement_ms:=-5.0'], 'latency_requirement_ms'),
    ('planner_node', ['hysteresis:=3.0'], 'hysteresis'),
    ('planner_node', ['mode:=fastest'], 'mode'),
    ('planner_node', ['latency_requirement_ms:=soon'], 'latency_requirement_ms'),
    ('planner_node', ['online_calibration:=maybe'], 'online_calibration'),
    ('device_node', ['model:=no_such_model'], 'no_such_model'),
    ('device_node', ['emulated_slowdown:=0.5'], 'emulated_slowdown'),
    ('device_node', ['reply_timeout_s:=0.0'], 'reply_timeout_s'),
    ('edge_node', ['model:=/tmp/not_a_model.yaml'], 'not_a_model'),
    ('camera_node', ['source:=tape:/dev/null'], 'tape'),
    ('camera_node', ['rate_hz:=-1.0'], 'rate_hz'),
    ('bandwidth_monitor', ['probe_duty:=2.0'], 'probe_duty'),
])
def test_bad_configuration_at_start_is_refused_with_the_reason(
        name: str, params: list[str], reason: str) -> None:
    code, output = start(name, *params)
    assert code == 2, output
    assert 'error' in output and reason in output, output
    assert 'Traceback' not in output, output


def test_a_corrupt_profile_is_refused_at_start(corrupt_profile: Path) -> None:
    code, output = start('planner_node', f'edge_profile:={corrupt_profile}')
    assert code == 2 and str(corrupt_profile) in output, output


def test_bad_changes_at_run_time_keep_the_last_good_configuration(
        rclpy_context: object, processes: object, corrupt_profile: Path) -> None:
    node = Node('cfg_test', namespace='/cfg_run', context=rclpy_context)
    executor = SingleThreadedExecutor(context=rclpy_context)
    executor.add_node(node)
    plans: list[Plan] = []
    node.create_subscription(Plan, 'plan', plans.append, LATCHED_QOS)
    planner = processes('planner_node', '-r', '__ns:=/cfg_run',
                        '-p', 'latency_requirement_ms:=800.0')
    client = AsyncParameterClient(node, '/cfg_run/planner')
    assert client.wait_for_services(timeout_sec=30.0)
    assert spin_until(executor, lambda: len(plans) >= 1, 30), planner

    def set_one(name: str, value: object) -> object:
        future = client.set_parameters([Parameter(name, value=value)])
        executor.spin_until_future_complete(future, timeout_sec=20.0)
        return future.result().results[0]

    bad = [('latency_requirement_ms', -5.0, 'latency_requirement_ms'),
           ('latency_requirement_ms', float('nan'), 'out of range'),
           ('hysteresis', 3.0, ''),
           ('mode', 'fastest', 'mode'),
           ('device_profile', '/nonexistent/profile.yaml', 'profile not changed'),
           ('edge_profile', str(corrupt_profile), 'profile not changed'),
           ('device_profile', 'paper_desktop_edge', 'a device and an edge profile'),
           ('model', 'another_model', '')]
    for name, value, reason in bad:
        result = set_one(name, value)
        assert not result.successful, (name, value)
        assert result.reason and reason in result.reason, (name, result.reason)
    future = client.get_parameters(['latency_requirement_ms', 'mode', 'device_profile',
                                    'edge_profile', 'hysteresis'])
    executor.spin_until_future_complete(future, timeout_sec=20.0)
    values = [parameter_value_to_python(v) for v in future.result().values]
    assert values == [800.0, 'edgent', 'auto', 'auto', 0.1]
    # Still planning on the last good configuration: a good change goes through.
    before = plans[-1].plan_id
    assert set_one('latency_requirement_ms', 500.0).successful
    assert spin_until(executor, lambda: plans[-1].plan_id > before, 20)
    assert plans[-1].latency_requirement_ms == 500.0
    # A good profile is taken at run time, and the planner plans with it.
    import shutil

    from edgent_ros import latency as lat
    mine = corrupt_profile.parent / 'my_device.yaml'
    shutil.copy(lat.resolve_profile_path('paper_pi3_device'), mine)
    before = plans[-1].plan_id
    good = set_one('device_profile', str(mine))
    assert good.successful, good.reason
    assert spin_until(executor, lambda: plans[-1].plan_id > before, 20)
    assert planner.poll() is None
    executor.shutdown()
    node.destroy_node()


def test_a_writable_parameter_with_no_applier_stops_the_node(rclpy_context: object) -> None:
    """A parameter must take effect when set, or be read-only: a node that
    declares one it would accept and ignore does not start."""
    from edgent_ros.nodes.params import ParamSchema, ParamSpec
    node = Node('cfg_schema', namespace='/cfg_schema', context=rclpy_context)
    schema = ParamSchema(ParamSpec('rate_hz', 2.0, 'A rate.', 0.1, 10.0),
                         ParamSpec('name', 'x', 'A name.', read_only=True))
    try:
        with pytest.raises(ValueError, match='no applier: rate_hz'):
            schema.attach(node, {})
        taken: list[object] = []
        values = schema.attach(node, {'rate_hz': taken.append}, after=taken.append)
        assert values == {'rate_hz': 2.0, 'name': 'x'}
        result = node.set_parameters([Parameter('rate_hz', value=3)])[0]  # an integer
        assert result.successful and taken == [3.0, ['rate_hz']]
        assert node.get_parameter('rate_hz').value == 3.0
        refused = node.set_parameters([Parameter('name', value='y')])[0]
        assert not refused.successful and 'read-only' in refused.reason
    finally:
        node.destroy_node()

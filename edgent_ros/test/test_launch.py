"""The launch files, run by the real launch and launch_ros where they are installed.

launch, launch_ros and ros2cli are not on PyPI, so on machines set up from
the ROS 2 wheels (our CI) this test is skipped; on a ROS 2 install it runs.
"""

from __future__ import annotations

import signal
import sys
import textwrap

import pytest

from edgent_ros.bringup import share_dir

from .conftest import spin_until, start_session, stop_session

pytest.importorskip('launch', reason='launch is not installable from PyPI (not in ROS 2 '
                    'wheels); this runs on a ROS 2 install')
pytest.importorskip('launch_ros', reason='launch_ros is not installable from PyPI; this runs '
                    'on a ROS 2 install')

pytestmark = [pytest.mark.ros, pytest.mark.slow]

RUNNER = textwrap.dedent('''
    import sys
    from launch import LaunchDescription, LaunchService
    from launch.actions import IncludeLaunchDescription, Shutdown, TimerAction
    from launch.launch_description_sources import PythonLaunchDescriptionSource
    path, seconds, *pairs = sys.argv[1:]
    arguments = [tuple(p.split(':=', 1)) for p in pairs]
    service = LaunchService()
    service.include_launch_description(LaunchDescription([
        IncludeLaunchDescription(PythonLaunchDescriptionSource(path),
                                 launch_arguments=arguments),
        TimerAction(period=float(seconds), actions=[Shutdown()])]))
    sys.exit(service.run())
''')


def test_edgent_launch_runs_the_pipeline_with_arguments(device_outputs: object) -> None:
    executor, results, plans = device_outputs
    launch_file = share_dir() / 'launch' / 'edgent.launch.py'
    proc = start_session([sys.executable, '-c', RUNNER, str(launch_file), '30',
                          'latency_requirement_ms:=300'])
    try:
        assert spin_until(executor, lambda: len(results) >= 10 and plans, 40)
    finally:
        output = stop_session(proc, signal.SIGINT)  # launch shuts its nodes down on SIGINT
    assert plans[-1].latency_requirement_ms == 300.0, output[-2000:]


@pytest.mark.parametrize('arguments, expected', [([], 500.0),
                                                 (['latency_requirement_ms:=300'], 300.0)])
def test_the_parameter_file_stands_unless_the_argument_is_given(
        device_outputs: object, tmp_path: object, arguments: list[str],
        expected: float) -> None:
    executor, _, plans = device_outputs
    params = tmp_path / 'my_device.yaml'
    params.write_text('/device/planner:\n  ros__parameters:\n    latency_requirement_ms: 500.0\n')
    launch_file = share_dir() / 'launch' / 'device.launch.py'
    proc = start_session([sys.executable, '-c', RUNNER, str(launch_file), '20',
                          f'device_params:={params}', 'use_camera:=false', *arguments])
    try:
        assert spin_until(executor, lambda: bool(plans), 30)
    finally:
        output = stop_session(proc, signal.SIGINT)
    assert plans[-1].latency_requirement_ms == expected, output[-2000:]

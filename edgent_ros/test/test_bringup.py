"""edgent-bringup starts the launch files' nodes from the same YAML files."""

from __future__ import annotations

import signal

import pytest

from edgent_ros.bringup import ros_args, specs
from edgent_ros.node_table import NODES

from .conftest import executable, spin_until, start_session, stop_session

pytestmark = [pytest.mark.ros, pytest.mark.slow]


def test_ros_args_carry_name_namespace_remaps_params_and_overrides(tmp_path: object) -> None:
    device = next(s for s in NODES['device'] if s.name == 'device')
    args = ros_args(device, [tmp_path / 'p.yaml'], ['device.top_k:=5', 'planner.x:=1'],
                    ['device:image:=/cam/image_raw'])
    joined = ' '.join(args)
    assert '-r __node:=device -r __ns:=/device' in joined
    assert '-r tensor:=/edge/tensor' in joined and '-r reply:=/edge/reply' in joined
    assert '-r image:=/cam/image_raw' in joined
    assert f'--params-file {tmp_path / "p.yaml"}' in joined
    assert '-p top_k:=5' in joined and 'x:=1' not in joined
    assert [s.name for s in specs('all', ('camera',))] == [
        'device', 'bandwidth_monitor', 'planner', 'edge', 'probe_echo']


@pytest.mark.parametrize('mode', ['processes', 'single-process'])
def test_bringup_runs_the_pipeline(device_outputs: object, mode: str) -> None:
    executor, results, plans = device_outputs
    cmd = [executable('edgent-bringup'), '--role', 'all', '--duration', '40',
           '--set', 'planner.latency_requirement_ms:=450.0']
    if mode == 'single-process':
        cmd.append('--single-process')
    proc = start_session(cmd)
    try:
        assert spin_until(executor, lambda: len(results) >= 10 and plans, 40), \
            (len(results), len(plans))
    finally:
        output = stop_session(proc, signal.SIGTERM)  # edgent-bringup stops its nodes on SIGTERM
    assert plans[-1].latency_requirement_ms == 450.0, output[-2000:]
    assert sum(r.label >= 0 for r in results) >= 5  # digits replay carries labels
    assert proc.returncode is not None

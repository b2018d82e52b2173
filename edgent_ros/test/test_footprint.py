"""What keeps the device side small and quiet on a Pi: imports and executors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from .conftest import executable


def imported(module: str) -> set[str]:
    """Which heavy packages importing a module pulls in (a fresh interpreter)."""
    code = (f'import sys, {module}; '
            "print(' '.join(m for m in ('torch', 'sklearn', 'scipy', 'cv2') if m in sys.modules))")
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         timeout=120, check=True)
    return set(out.stdout.split())


@pytest.mark.parametrize('module, allowed', [
    ('edgent_ros.nodes.planner_node', set()),
    ('edgent_ros.nodes.bandwidth_monitor', set()),
    ('edgent_ros.nodes.camera_node', {'cv2'}),  # scikit-learn only when it replays digits
    ('edgent_ros.card', set()),
    ('edgent_ros.latency', set()),
])
def test_nodes_that_run_no_network_import_no_torch(module: str, allowed: set[str]) -> None:
    assert imported(module) <= allowed


@pytest.mark.parametrize('executor', ['events', 'single'])
def test_a_node_stops_cleanly_on_sigint_on_either_executor(executor: str) -> None:
    env = dict(os.environ, EDGENT_EXECUTOR=executor)
    proc = subprocess.Popen([executable('probe_echo'), '--ros-args', '-r', '__ns:=/footprint'],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(3.0)
        assert proc.poll() is None, proc.stdout.read()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_an_unknown_executor_is_refused_with_the_reason() -> None:
    env = dict(os.environ, EDGENT_EXECUTOR='threads')
    result = subprocess.run([executable('probe_echo')], env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2
    assert 'EDGENT_EXECUTOR must be one of events, single' in result.stdout + result.stderr

"""edgent-demo as a new user meets it: where its logs go, and failures
that end in a message, not a traceback (issue 18)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from edgent_ros import testbed
from edgent_ros.demo import pipeline

from .conftest import executable


def test_each_run_logs_to_a_fresh_directory_of_its_own() -> None:
    """A fixed /tmp/edgent_demo made by a first (root) run left a later user
    with PermissionError on device.log: each run gets its own directory,
    owned by whoever runs it."""
    first, second = pipeline.default_log_dir(), pipeline.default_log_dir()
    try:
        assert first != second
        for d in (first, second):
            assert d.is_dir() and d.stat().st_uid == os.getuid()
            assert (d.stat().st_mode & 0o077) == 0  # not readable by others
    finally:
        shutil.rmtree(first)
        shutil.rmtree(second)


def test_a_log_directory_it_cannot_use_is_a_message_not_a_traceback(tmp_path: Path) -> None:
    """The failure a non-root user met (a log file it cannot open), made so
    that root meets it too: the log directory is a file. Refused before
    anything is started or profiled."""
    blocked = tmp_path / 'not_a_dir'
    blocked.write_text('')
    tool = shutil.which('edgent-demo')
    if tool is None:
        pytest.skip('edgent-demo is not installed in this environment')
    run = subprocess.run([tool, '--no-testbed', '--trace', '10000:1', '--log-dir', str(blocked)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode != 0
    assert 'Traceback' not in run.stderr + run.stdout
    assert str(blocked) in run.stderr and 'log' in run.stderr


def demo_tool() -> str:
    tool = shutil.which('edgent-demo')
    if tool is None:
        pytest.skip('edgent-demo is not installed in this environment')
    return tool


def frames_of(log_dir: Path) -> tuple[list[dict], float]:
    """The frames the demo's monitor recorded, and the trace's start (its first
    answered frame as planned) read from frames.json."""
    data = json.loads((log_dir / 'frames.json').read_text())
    frames = data['frames']
    first = min(r['received_s'] for r in frames if not r['fallback'] and not r['skipped'])
    return frames, first


@pytest.mark.ros
@pytest.mark.slow
def test_the_demo_plays_its_trace_and_tells_plan_changes_fallbacks_and_phases(
        tmp_path: Path) -> None:
    """make demo as root: the link follows the trace; the demo prints the link's
    steps, plan changes and fallbacks (not a line per frame), a summary per
    phase, and writes the PNG timeline. While the link is down the device
    answers alone; when it is back the edge answers again."""
    why = testbed.available()
    if why:
        pytest.skip(f'the shaped demo needs the testbed: {why}')
    run = subprocess.run([demo_tool(), '--trace', '10000:8,0:5,10000:9', '--log-dir',
                          str(tmp_path)], capture_output=True, text=True, timeout=400)
    out = run.stdout
    assert run.returncode == 0, out[-3000:] + run.stderr[-3000:]
    assert 'Traceback' not in out + run.stderr
    for want in ('first frame answered', 'LINK DOWN', 'LINK 10.0 Mbit/s', 'plan ',
                 'summary:', 'by phase of the trace:', 'link down:', 'timeline'):
        assert want in out, want
    assert not [line for line in out.splitlines() if line.startswith('frame ')]
    assert str(tmp_path / 'timeline.png') in out
    assert (tmp_path / 'timeline.png').read_bytes()[:4] == b'\x89PNG'
    frames, t0 = frames_of(tmp_path)
    down = [r for r in frames if 8.5 <= r['received_s'] - t0 < 13.0]
    after = [r for r in frames if r['received_s'] - t0 >= 17.0]
    assert down and not any(r['remote'] for r in down)  # nothing crossed the link
    assert after and any(r['remote'] for r in after)  # and the edge answered again
    assert 'NEW PLAN' in out or 'FALLBACK' in out  # the link going down was noticed


@pytest.mark.ros
@pytest.mark.slow
def test_without_the_testbed_the_demo_says_so_and_still_slows_the_device(
        tmp_path: Path) -> None:
    """Without root (here: --no-testbed, the same path) the link cannot follow
    the trace: the demo says so, runs on loopback, the device still slowed,
    and still ends with its summary and timeline."""
    run = subprocess.run([demo_tool(), '--no-testbed', '--trace', '10000:6', '--log-dir',
                          str(tmp_path)], capture_output=True, text=True, timeout=400)
    out = run.stdout
    assert run.returncode == 0, out[-3000:] + run.stderr[-3000:]
    assert 'NOT shaped' in out and 'cannot follow the trace' in out
    assert 'slowed 20x' in out
    assert 'LINK' not in out  # no step was applied
    assert 'summary:' in out and (tmp_path / 'timeline.png').is_file()
    device_log = (tmp_path / 'device.log').read_text()
    assert 'layers emulated 20x slower' in device_log, device_log[-2000:]


@pytest.mark.ros
@pytest.mark.slow
def test_ctrl_c_ends_the_demo_with_a_line_not_a_traceback(tmp_path: Path) -> None:
    """Ctrl-C while the demo profiles this machine (an empty profile cache: a
    first run): it exits 130, saying so, without a traceback."""
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / 'cache'))
    # Started as a shell starts a background job (`edgent-demo &`): with SIGINT
    # ignored, which the demo inherits. It must still stop on Ctrl-C (kill -INT);
    # it did not (found by a `make test` run in the background).
    proc = subprocess.Popen([demo_tool(), '--no-testbed', '--trace', '10000:60', '--log-dir',
                             str(tmp_path / 'logs')], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    time.sleep(6.0)  # profiling: edgent-profile takes half a minute here
    proc.send_signal(signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        # Left running, its nodes would disturb the tests after this one.
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
        raise
    assert proc.returncode == 130, out[-2000:] + err[-2000:]
    assert 'Traceback' not in out + err


@pytest.mark.ros
def test_the_monitor_stops_on_sigint_even_started_in_the_background() -> None:
    """edgent-monitor started with SIGINT ignored (a background job): SIGINT
    still ends it, with its summary and no traceback (rclpy's handler shut
    its context down under the spin loop, which raised)."""
    proc = subprocess.Popen([executable('edgent-monitor'), '--view', 'frames', '--ros-args',
                             '-r', '__ns:=/monitor_sigint'], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    time.sleep(4.0)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert 'Traceback' not in out + err, err[-2000:]
    assert '[edgent-monitor]' in out and proc.returncode == 1  # no frames: 1, as documented

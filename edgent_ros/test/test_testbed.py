"""The emulated testbed end to end: two namespaces, a shaped link, a CPU-limited device."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from edgent_ros import testbed
from edgent_ros.demo.pipeline import start_on_testbed, wait_for_line

from .conftest import TESTBED_RATE_KBIT as RATE_KBIT
from .conftest import executable

pytestmark = [pytest.mark.ros, pytest.mark.slow]

INPUT_BYTES = 3 * 32 * 32 * 4


def test_frames_cross_the_shaped_link_and_everything_is_cleaned_up(
        bed: testbed.Testbed, tmp_path: Path) -> None:
    # Table II profiles at 2 Mbit/s and a 1 s deadline: the planner sends the
    # input to the edge (partition 0), so every such frame crosses the link.
    # Planned on the profiles alone: a first frame answered on the device (it
    # can come before the edge is discovered: the camera starts sooner than
    # the edge, which loads torch) would teach the planner that this device
    # is far faster than a Pi 3, and device-only plans would follow.
    # Raw float32 (codecs:=raw): the 12 KB input is what must take its time
    # on the link (a JPEG of it is 1 KB, within the shaper's burst).
    overrides = ['camera.rate_hz:=4.0', 'camera.wait_for_subscribers:=true',
                 'planner.online_calibration:=false', 'planner.codecs:=raw',
                 'planner.latency_requirement_ms:=1000.0',
                 f'planner.initial_bandwidth_kbps:={RATE_KBIT}']
    logs = {k: open(tmp_path / f'{k}.log', 'w') for k in ('device', 'edge')}
    start_on_testbed(bed, overrides, 0.5, logs['device'], logs['edge'])
    # Frames before the device discovers the edge across the shaped link are
    # (rightly) answered on the device; count those after it.
    assert wait_for_line(logs['device'].name, 'edge matched', timeout_s=60.0), \
        (tmp_path / 'device.log').read_text()[-3000:]
    out = tmp_path / 'frames.json'
    monitor = bed.spawn('device', [executable('edgent-monitor'), '--frames', '12', '--quiet',
                                   '--timeout', '150', '--json', str(out),
                                   '--ros-args', '-r', '__ns:=/device'],
                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = monitor.communicate(timeout=200)[0]
    for f in logs.values():
        f.close()
    assert monitor.returncode == 0, output + (tmp_path / 'device.log').read_text()[-3000:]
    frames = json.loads(out.read_text())['frames']
    assert len(frames) == 12
    remote = [f for f in frames if f['partition'] == 0 and not f['fallback']]
    assert len(remote) >= 8, frames
    # Uploading 12 KB at 2 Mbit/s takes 49 ms; unshaped loopback takes ~1 ms.
    floor_ms = 0.6 * INPUT_BYTES * 8 / RATE_KBIT
    assert min(f['latency_ms'] for f in remote) > floor_ms, remote
    assert sum(f['correct'] for f in frames if f['correct'] is not None) >= 6
    names = subprocess.run(['ip', 'netns', 'list'], capture_output=True, text=True).stdout
    assert bed.device_ns in names and bed.edge_ns in names


def test_rate_changes_apply_to_the_link(bed: testbed.Testbed) -> None:
    bed.set_rate(500.0)
    dev_if, _ = bed.veth
    shown = subprocess.run(['ip', 'netns', 'exec', bed.device_ns, 'tc', 'qdisc', 'show', 'dev',
                            dev_if], capture_output=True, text=True).stdout
    assert 'tbf' in shown and '500Kbit' in shown
    with pytest.raises(testbed.TestbedError, match='rate must be > 0'):
        bed.set_rate(0.0)


def test_trace_replay_steps_the_rate_on_schedule(bed: testbed.Testbed) -> None:
    import time

    start = time.monotonic()
    replay = bed.replay([(0.0, 800.0), (0.3, 1200.0), (0.6, 300.0)])
    replay.join(timeout=5)
    assert [rate for _, rate in replay.applied] == [800.0, 1200.0, 300.0]
    offsets = [t - start for t, _ in replay.applied]
    assert offsets[1] == pytest.approx(0.3, abs=0.15)
    assert offsets[2] == pytest.approx(0.6, abs=0.15)
    dev_if, _ = bed.veth
    shown = subprocess.run(['ip', 'netns', 'exec', bed.device_ns, 'tc', 'qdisc', 'show', 'dev',
                            dev_if], capture_output=True, text=True).stdout
    assert '300Kbit' in shown
    with pytest.raises(testbed.TestbedError, match='bad trace step'):
        bed.replay([(1.0, -5.0)])


# Records the monitor's published estimates, inside the device namespace.
RECORDER = """
import json, sys, time
import rclpy
from rclpy.node import Node
from edgent_ros_interfaces.msg import BandwidthEstimate
from edgent_ros.qos import LATCHED_QOS
rclpy.init()
node = Node('estimate_recorder')
seen = []
node.create_subscription(BandwidthEstimate, '/device/bandwidth', lambda m: seen.append(
    (time.time(), m.bandwidth_kbps, m.upper_bound)), LATCHED_QOS)
end = time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    rclpy.spin_once(node, timeout_sec=0.05)
open(sys.argv[1], 'w').write(json.dumps(seen))
node.destroy_node()
rclpy.try_shutdown()
"""


def test_a_step_down_is_seen_as_a_bound_before_a_slow_probe_lands(
        bed: testbed.Testbed, tmp_path: Path) -> None:
    import sys
    import time

    out = tmp_path / 'estimates.json'
    quiet = {'stdout': subprocess.DEVNULL, 'stderr': subprocess.DEVNULL}
    bed.spawn('edge', [executable('probe_echo'), '--ros-args', '-r', '__ns:=/device'], **quiet)
    bed.spawn('device', [executable('bandwidth_monitor'), '--ros-args', '-r', '__ns:=/device',
                         '-p', 'probe_idle_s:=0.0'], **quiet)
    recorder = bed.spawn('device', [sys.executable, '-c', RECORDER, str(out), '18'],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(10.0)  # probes measure the 2 Mbit/s link
    step = time.time()
    bed.set_rate(80.0)
    output = recorder.communicate(timeout=60)[0]
    assert recorder.returncode == 0, output
    seen = json.loads(out.read_text())
    before = [kbps for t, kbps, _ in seen if t < step]
    after = [(kbps, bound) for t, kbps, bound in seen if t >= step]
    assert before and before[-1] > 1000.0, seen
    # At 80 kbit/s a probe takes 0.8 s. The probe out when the link fell is
    # overdue long before it lands: the estimate falls first as its upper
    # bound, not when a probe at the new rate is measured.
    low = [bound for kbps, bound in after if kbps < 500.0]
    assert low and low[0], after
    # Once probes land, their measured rate holds the estimate near the link's
    # (the shaper's 1600-byte burst makes an 8 KB probe read up to ~25% high).
    final, final_bound = after[-1]
    assert 50.0 < final < 130.0 and not final_bound, after


def test_leftovers_of_a_killed_run_are_removed() -> None:
    why = testbed.available()
    if why:
        pytest.skip(f'the testbed cannot run here: {why}')
    stale = f'{testbed.PREFIX}999999-dev'  # no such process: a run that was killed
    subprocess.run(['ip', 'netns', 'add', stale], check=True)
    try:
        assert stale in testbed.leftovers()
        assert stale in testbed.remove_leftovers()
        assert stale not in testbed.leftovers()
    finally:
        subprocess.run(['ip', 'netns', 'del', stale], capture_output=True)

"""The fleet testbed: robots and edges on one emulated LAN, each robot's link
shaped on its own, DDS discovery across the bridge, edges cut off, and
nothing left behind."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from edgent_ros import testbed

pytestmark = [pytest.mark.ros, pytest.mark.slow,
              pytest.mark.skipif(testbed.available() is not None,
                                 reason=f'fleet testbed: {testbed.available()}')]

SINK = ('import socket\n'
        's = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n'
        's.bind(("0.0.0.0", 5001)); s.listen(50)\n'
        'while True:\n'
        '    c, _ = s.accept()\n'
        '    while c.recv(65536): pass\n'
        '    c.sendall(b"ok"); c.close()\n')


def send_s(fleet: testbed.Fleet, device: int, edge: int, nbytes: int) -> float | None:
    """Seconds to send nbytes from a robot to an edge (TCP), None if unreachable."""
    code = (f'import socket, time\n'
            f's = socket.create_connection(("{fleet.addr(("edge", edge))}", 5001), timeout=2)\n'
            f't = time.monotonic(); s.sendall(b"x" * {nbytes}); s.shutdown(socket.SHUT_WR)\n'
            f'assert s.recv(2) == b"ok"; print(time.monotonic() - t)\n')
    r = subprocess.run(['ip', 'netns', 'exec', fleet.ns(('device', device)), sys.executable,
                        '-c', code], capture_output=True, text=True, timeout=30)
    return float(r.stdout) if r.returncode == 0 else None


def test_each_robots_link_is_shaped_on_its_own_and_edges_can_be_cut_off() -> None:
    with testbed.Fleet(devices=2, edges=2, rate_kbit=[1000.0, 4000.0]) as fleet:
        for j in range(2):
            fleet.spawn(('edge', j), [sys.executable, '-c', SINK])
        time.sleep(0.5)
        nbytes = 150_000  # 1.2 s at 1 Mbit/s, 0.3 s at 4
        for device, rate in ((0, 1000.0), (1, 4000.0)):
            took = send_s(fleet, device, 0, nbytes)
            expected = nbytes * 8 / (rate * 1e3)
            assert took is not None and 0.7 * expected < took < 2.0 * expected, \
                (device, took, expected)
        fleet.set_link(('edge', 1), False)
        assert send_s(fleet, 0, 1, 1000) is None  # cut off
        assert send_s(fleet, 0, 0, 1000) is not None  # the other edge still there
        fleet.set_link(('edge', 1), True)
        end = time.monotonic() + 10  # the port and the neighbour entries come back
        while send_s(fleet, 0, 1, 1000) is None:
            assert time.monotonic() < end, 'edge 1 still cut off after its link came back'
        names = [fleet.ns(h) for h in fleet.hosts] + [fleet.switch_ns]
    listed = subprocess.run(['ip', 'netns', 'list'], capture_output=True, text=True).stdout
    assert not any(n in listed for n in names), listed


LISTENER = ('import rclpy, sys\n'
            'from std_msgs.msg import String\n'
            'rclpy.init(); n = rclpy.create_node("l")\n'
            'got = []\n'
            'n.create_subscription(String, "/fleet_test", got.append, 10)\n'
            'import time; end = time.time() + 40\n'
            'while not got and time.time() < end: rclpy.spin_once(n, timeout_sec=0.1)\n'
            'print(got[0].data if got else "none", flush=True)\n')
TALKER = ('import rclpy, time\n'
          'from std_msgs.msg import String\n'
          'rclpy.init(); n = rclpy.create_node("t")\n'
          'p = n.create_publisher(String, "/fleet_test", 10)\n'
          'end = time.time() + 40\n'
          'while time.time() < end:\n'
          '    p.publish(String(data="from robot 1")); rclpy.spin_once(n, timeout_sec=0.2)\n')


def test_dds_discovers_across_the_bridge_and_a_killed_run_is_cleaned_up() -> None:
    fleet = testbed.Fleet(devices=2, edges=1, name=f'{testbed.PREFIX}999999f')
    fleet.start()
    try:
        listener = fleet.spawn(('edge', 0), [sys.executable, '-c', LISTENER],
                               stdout=subprocess.PIPE, text=True)
        fleet.spawn(('device', 1), [sys.executable, '-c', TALKER])
        out, _ = listener.communicate(timeout=60)
        assert out.strip() == 'from robot 1'
    finally:
        for proc in fleet.processes:
            fleet.kill(proc)
        fleet.processes.clear()
    # As if its process had been killed: pid 999999 does not exist.
    assert any(n.startswith(f'{testbed.PREFIX}999999f') for n in testbed.leftovers())
    removed = testbed.remove_leftovers()
    assert len(removed) == 4 and testbed.leftovers() == []
    fleet.up = False
